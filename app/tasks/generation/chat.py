"""Chat prompts: a model's own chat template (Jinja, from its HF folder) renders a conversation as the text the
model was trained to continue. Rendered as transformers' ``apply_chat_template`` renders it: a sandboxed
environment, ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, a ``tojson`` that keeps non-ASCII."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"


class ChatTemplateError(ValueError):
    """The conversation cannot be rendered (the template raised, e.g. on a role order it does not accept)."""


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _token(value: Any) -> str:
    """A special token as tokenizer_config.json spells it (a string, or an AddedToken dict with ``content``)."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value) if value is not None else ""


class ChatTemplate:
    def __init__(self, source: str, special_tokens: Mapping[str, str]) -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise
        self.template = environment.from_string(source)
        self.special_tokens = dict(special_tokens)

    @classmethod
    def from_hf_dir(cls, hf_dir: Path) -> ChatTemplate | None:
        """The template saved with the tokenizer (``chat_template.jinja``, or ``chat_template`` in
        tokenizer_config.json); None when the model has none."""
        config_path = hf_dir / TOKENIZER_CONFIG
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        source = (hf_dir / TEMPLATE_FILE).read_text() if (hf_dir / TEMPLATE_FILE).is_file() else config.get(
            "chat_template")
        if not isinstance(source, str) or not source.strip():
            return None
        tokens = {name: _token(config.get(name)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
        return cls(source, tokens)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for the assistant's next turn after ``messages`` (``{"role", "content"}`` each)."""
        try:
            return self.template.render(messages=[dict(m) for m in messages], add_generation_prompt=True,
                                        **self.special_tokens)
        except TemplateError as exc:
            raise ChatTemplateError(f"the model's chat template refused the conversation: {exc}") from exc
