"""Static pages served by the app (the attention viewer); a package so that package-data ships them."""
