"""One submitted generation as the scheduler sees it: its sequence, its deadline, and how its text reaches the
request (``deliver``, called on the scheduler thread)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from app.tasks.generation.sequence import Chunk, Sequence

Deliver = Callable[[Chunk | Exception], None]


@dataclass(eq=False)
class Ticket:
    """One submitted generation. ``deliver`` gets text chunks (only the final one, with all the text, when not
    ``streamed``) or the exception that ended it; ``cancel()``, from any thread, drops it at the next step."""

    sequence: Sequence
    deliver: Deliver
    deadline: float
    """`time.monotonic()` after which it ends with finish_reason ``timeout``."""
    streamed: bool
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    ended: bool = False
    _texts: list[str] = field(default_factory=list)

    def cancel(self) -> None:
        self.cancelled = True

    def send(self, text: str) -> None:
        if not text:
            return
        if self.streamed:
            self._emit(Chunk(text))
        else:
            self._texts.append(text)

    def end(self, error: Exception | None = None) -> None:
        """Deliver the final chunk (or ``error``); nothing to a cancelled ticket."""
        self.ended = True
        if self.cancelled:
            return
        if error is not None:
            self._emit(error)
            return
        final = self.sequence.final()
        self._emit(final if self.streamed else replace(final, text="".join(self._texts) + final.text))

    def _emit(self, item: Chunk | Exception) -> None:
        try:
            self.deliver(item)
        except RuntimeError:  # the receiving event loop is gone
            self.cancelled = True
