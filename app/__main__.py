"""``python -m app``: serve `app.main` with uvicorn on the configured host and port."""

from __future__ import annotations

import sys

import uvicorn

from app.core.config import SettingsError, load_settings
from app.core.logging import setup_logging
from app.main import create_app


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
