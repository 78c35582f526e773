"""Input limits, checked where requests enter the service core (before any queue or model call)."""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import limit_error
from app.settings import Settings

Loc = list[str | int]


def check_texts(texts: Sequence[str], settings: Settings, loc: Loc) -> None:
    """At most ``APP_MAX_BATCH_TEXTS`` texts of at most ``APP_MAX_TEXT_CHARS`` characters each."""
    count, chars = settings.max_batch_texts, settings.max_text_chars
    if len(texts) > count:
        raise limit_error(f"too many texts: {len(texts)} > {count}", loc, f"at most {count} texts")
    for index, text in enumerate(texts):
        if len(text) > chars:
            raise limit_error(f"text {index} is too long: {len(text)} > {chars} characters", [*loc, index],
                              f"at most {chars} characters")


def check_text(text: str, settings: Settings, loc: Loc) -> None:
    """One text of at most ``APP_MAX_TEXT_CHARS`` characters."""
    chars = settings.max_text_chars
    if len(text) > chars:
        raise limit_error(f"text is too long: {len(text)} > {chars} characters", loc, f"at most {chars} characters")


def check_new_tokens(requested: int, settings: Settings, field: str) -> None:
    """At most ``APP_MAX_NEW_TOKENS`` tokens to generate."""
    cap = settings.max_new_tokens
    if requested > cap:
        message = f"{field} {requested} is above the limit of {cap}"
        raise limit_error(message, ["body", field], message)
