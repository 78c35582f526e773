"""Input checks, where requests enter the service core (before any queue or model call): limits, and what text
may hold.

Text policy (every text field of every protocol passes through here):

- a lone UTF-16 surrogate (U+D800..U+DFFF: valid JSON as ``"\ud800"``, but no Unicode character, so no tokenizer
  and no UTF-8 encoder takes it) is refused with 422, naming the field, the index and the character position;
- NUL and other control characters are accepted as they are: each model's tokenizer treats them as it was
  trained to (WordPiece normalisers drop them, byte-level BPE reads them as bytes);
- Unicode normal forms are not changed: the tokenizer's own normaliser applies (e.g. NFD and accent stripping
  for uncased BERT models); text is never rewritten behind the client's back.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.errors import field_error, limit_error
from app.settings import Settings

Loc = list[str | int]


def check_unicode(text: str, loc: Loc) -> None:
    """``text`` holds only Unicode characters (no lone surrogate); else a 422 located at ``loc``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        message = (f"{'.'.join(str(part) for part in loc[1:])}: character {exc.start} is a lone surrogate "
                   f"(U+{ord(text[exc.start]):04X}), which is not a Unicode character")
        raise field_error(message, loc, "lone surrogate: not a Unicode character", "unicode_error") from None


def check_texts(texts: Sequence[str], settings: Settings, loc: Loc, single: bool = False) -> None:
    """At most ``APP_MAX_BATCH_TEXTS`` texts of at most ``APP_MAX_TEXT_CHARS`` characters each, all Unicode.
    ``loc`` is the field's location; a list field's errors add the text's index (``single``: a one-text field)."""
    count, chars = settings.max_batch_texts, settings.max_text_chars
    if len(texts) > count:
        raise limit_error(f"too many texts: {len(texts)} > {count}", loc, f"at most {count} texts")
    for index, text in enumerate(texts):
        if len(text) > chars:
            raise limit_error(f"text {index} is too long: {len(text)} > {chars} characters",
                              loc if single else [*loc, index], f"at most {chars} characters")
        check_unicode(text, loc if single else [*loc, index])


def check_windows(tokens: Sequence[int], windows: int, settings: Settings, loc: Loc, single: bool = False) -> None:
    """Texts to classify of at most ``APP_MAX_TEXT_TOKENS`` tokens each (``tokens``: each text's count), making
    at most ``APP_MAX_REQUEST_WINDOWS`` windows together."""
    cap = settings.max_text_tokens
    for index, count in enumerate(tokens):
        if count > cap:
            raise limit_error(f"text {index} is too long: {count} > {cap} tokens (APP_MAX_TEXT_TOKENS)",
                              loc if single else [*loc, index], f"at most {cap} tokens")
    if windows > settings.max_request_windows:
        message = (f"the texts make {windows} windows for the model to read, more than "
                   f"{settings.max_request_windows} per request (APP_MAX_REQUEST_WINDOWS)")
        raise limit_error(message, loc, f"at most {settings.max_request_windows} windows")


def check_text(text: str, settings: Settings, loc: Loc) -> None:
    """One text of at most ``APP_MAX_TEXT_CHARS`` characters, all Unicode."""
    chars = settings.max_text_chars
    if len(text) > chars:
        raise limit_error(f"text is too long: {len(text)} > {chars} characters", loc, f"at most {chars} characters")
    check_unicode(text, loc)


def check_new_tokens(requested: int, settings: Settings, field: str) -> None:
    """At most ``APP_MAX_NEW_TOKENS`` tokens to generate."""
    cap = settings.max_new_tokens
    if requested > cap:
        message = f"{field} {requested} is above the limit of {cap}"
        raise limit_error(message, ["body", field], message)
