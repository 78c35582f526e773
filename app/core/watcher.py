"""Models that land while the service runs: `make run` serves the first model while it builds the others, and
each artifact published into the models dir afterwards is served once it is loaded and warm."""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread

from app.core.registry import Registry

log = logging.getLogger(__name__)


async def watch(registry: Registry, every_s: float) -> None:
    """Every ``every_s`` seconds, load, warm and register each artifact folder that is new in the models dir, one
    at a time in a worker thread: the event loop and the models already serving are not held up. Runs until
    cancelled; a model being loaded then is finished first."""
    log.info("watching %s for new models every %gs", registry.settings.models_dir, every_s)
    while True:
        await asyncio.sleep(every_s)
        try:
            for name in await anyio.to_thread.run_sync(registry.arrived):
                log.info("model %s landed in the models dir: loading it", name)
                await anyio.to_thread.run_sync(registry.pick_up, name)
        except Exception:  # e.g. the models dir vanished: the next look tries again
            log.exception("looking for new models in %s failed", registry.settings.models_dir)
