"""Lightning training pipelines that export self-describing artifacts into models/."""
