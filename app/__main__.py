"""``python -m app``: serve `app.main` with uvicorn on the configured host and port.

SIGTERM or SIGINT stops it gracefully: the listening socket closes at once (new connections are refused),
requests in flight finish (at most ``APP_SHUTDOWN_TIMEOUT_S``, then they are cancelled), the lifespan shuts
down, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from app.logs import setup_logging
from app.main import create_app
from app.settings import SettingsError, load_settings

log = logging.getLogger("app.main")


def _drained(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal that stopped it once it has drained; by then there is nothing left to do."""
    log.info("stopped by %s after draining", signal.Signals(signum).name)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _drained)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=False,
                log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
                timeout_graceful_shutdown=settings.shutdown_timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
