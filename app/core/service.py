"""The service core, between the HTTP adapters and the models (as TEI's core sits between router and backends).

It owns model lookup, input limits, tokenisation of prompts and admission: routes (and any protocol adapter)
decode a request, call one method here, and encode what comes back. Everything raised here is a domain error
(`app.errors`); `app.api.errors` maps them to HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread

from app.core.admission import Admission
from app.core.batcher import Batcher
from app.core.limits import check_new_tokens, check_text, check_texts, check_unicode, check_windows
from app.core.registry import Registry
from app.core.runner import Runner
from app.core.scheduler import GenerationJob, Schedulers
from app.errors import TimedOut, field_error, limit_error
from app.settings import LongTextStrategy, Settings
from app.tasks import TASKS
from app.tasks.attention import (
    Aggregate,
    Attending,
    AttentionResult,
    AttentionUnavailable,
    Selection,
    SelectionError,
    TokenLimitError,
    reduce,
)
from app.tasks.classification import Classifier, Prediction
from app.tasks.generation.chat import ChatTemplateError
from app.tasks.generation.generator import Generator
from app.tasks.generation.sequence import Chunk, GenerationParams
from contract import GENERATION, TEXT_CLASSIFICATION

Out = TypeVar("Out")


@dataclass(frozen=True)
class Prompt:
    """A prompt ready to generate from: the model and the prompt's token ids, every limit checked."""

    model: str
    generator: Generator
    ids: list[int]


@dataclass(frozen=True)
class AttentionQuery:
    text: str
    model: str | None = None
    layers: list[int] | None = None
    heads: list[int] | None = None
    aggregate: Aggregate = "none"


@dataclass(frozen=True)
class Attended:
    """The attention maps of one text: the model's full result and the selection asked for."""

    model: str
    runtime: str
    query: AttentionQuery
    result: AttentionResult
    selection: Selection


class Service:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.runner = Runner(settings.max_concurrency, settings.max_queue)
        self.batcher = Batcher.from_settings(settings, self.runner.limiter)
        self.schedulers = Schedulers(settings.max_batch_sequences, settings.max_queue,
                                     settings.max_prefill_tokens)
        self.loops: dict[str, Admission] = {"batch": self.batcher, "stream": self.schedulers}

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        """Refuse new work; waiting batches fail at once, generations get up to APP_REQUEST_TIMEOUT_S to end."""
        await self.batcher.close()
        await self.runner.close(0)
        await self.schedulers.close(self.settings.request_timeout_s)

    async def predict(self, task: str, model: str | None, texts: Sequence[str], loc: list[str | int],
                      single: bool = False) -> tuple[str, list[Any]]:
        """One result per text from a model of a batched ``task`` whose rows are texts (embeddings), in input
        order. ``loc`` locates the texts' field in errors (``single``: a field of one text, not a list)."""
        check_texts(texts, self.settings, loc, single)
        name, found = self.registry.get(model, task)
        return name, await self.loops[TASKS[task].loop].submit(name, found, texts)

    async def classify(self, model: str | None, texts: Sequence[str], loc: list[str | int], single: bool = False,
                       long_text: LongTextStrategy | None = None) -> tuple[str, list[Prediction]]:
        """One prediction per text from a text-classification model, in input order, each text read as
        ``long_text`` says (unset: the model's APP_LONG_TEXT_STRATEGIES entry, else APP_LONG_TEXT_STRATEGY). The
        texts are tokenised in a worker thread and cut into windows, which share the batcher's model calls with
        other requests' windows; a text over APP_MAX_TEXT_TOKENS tokens, or texts making more than
        APP_MAX_REQUEST_WINDOWS windows, are a 422."""
        check_texts(texts, self.settings, loc, single)
        name, found = self.registry.get(model, TEXT_CLASSIFICATION)
        assert isinstance(found, Classifier)
        strategy = long_text or self.settings.long_text_strategies.get(name, self.settings.long_text_strategy)
        splits = await anyio.to_thread.run_sync(found.split, texts, strategy)
        check_windows([s.tokens for s in splits], sum(len(s.windows) for s in splits), self.settings, loc, single)
        rows = await self.batcher.submit(name, found, [window for s in splits for window in s.windows])
        return name, found.join(splits, rows)

    def prompt(self, model: str | None, prompt: str, max_new_tokens: int, new_tokens_field: str) -> Prompt:
        """Check the limits that need settings or the model, and tokenise the prompt."""
        check_new_tokens(max_new_tokens, self.settings, new_tokens_field)
        check_unicode(prompt, ["body", "prompt"])
        name, found = self._generator(model)
        return self._fitting(name, found, found.encode(prompt))

    def chat_prompt(self, model: str | None, messages: Sequence[Mapping[str, str]], max_new_tokens: int,
                    new_tokens_field: str) -> Prompt:
        """The prompt of the assistant's next turn, rendered with the model's own chat template (422 when the
        model has none, or its template refuses the conversation)."""
        check_new_tokens(max_new_tokens, self.settings, new_tokens_field)
        for index, message in enumerate(messages):
            check_unicode(message["content"], ["body", "messages", index, "content"])
        name, found = self._generator(model)
        try:
            ids = found.encode_chat(messages)
        except ChatTemplateError as exc:
            raise field_error(str(exc), ["body", "messages" if found.chat_template else "model"]) from None
        return self._fitting(name, found, ids)

    def _generator(self, model: str | None) -> tuple[str, Generator]:
        name, found = self.registry.get(model, GENERATION)
        assert isinstance(found, Generator)
        return name, found

    @staticmethod
    def _fitting(name: str, found: Generator, ids: list[int]) -> Prompt:
        """``ids`` as a prompt, once it is not empty and leaves room in the context window."""
        if not ids:
            raise limit_error("the prompt encodes to no tokens", ["body", "prompt"], "the prompt encodes to no tokens")
        if len(ids) >= found.context_length:
            message = (f"the prompt has {len(ids)} tokens; model {name!r} reads at most "
                       f"{found.context_length - 1} before generating")
            raise limit_error(message, ["body", "prompt"], message)
        return Prompt(name, found, ids)

    def generate(self, prompt: Prompt, params: GenerationParams, streamed: bool) -> AsyncIterator[Chunk]:
        """Start the generation (`Overloaded` now, before any response) and return its chunks."""
        for index, stop in enumerate(params.stop):
            check_unicode(stop, ["body", "stop", index])
        job = GenerationJob(prompt.ids, params, self.settings.request_timeout_s, streamed)
        chunks: AsyncIterator[Chunk] = self.schedulers.submit(prompt.model, prompt.generator, job)
        return chunks

    def finished(self, final: Chunk | None) -> Chunk | None:
        """The final chunk of a generation that was not streamed; `TimedOut` when it ran out of time."""
        if final is not None and final.finish_reason == "timeout":
            raise TimedOut(f"the generation did not finish within {self.settings.request_timeout_s:g} s",
                           completion_tokens=final.completion_tokens)
        return final

    async def attention(self, query: AttentionQuery, where: str,
                        then: Callable[[Attended], Out]) -> Out:
        """The attention maps of ``query.text`` selected and aggregated as asked, passed to ``then`` in the
        worker thread (JSON encoding or drawing happens there too). A text over APP_MAX_ATTENTION_TOKENS tokens,
        a layer or head the model lacks, or a model without attention maps is a 422 located in ``where``."""
        check_text(query.text, self.settings, [where, "text"])
        name, found = self.registry.get_any(query.model)
        if "attention" not in found.capabilities:
            raise field_error(f"model {name!r} does not serve attention maps", [where, "model"], "no attention maps")
        attending: Attending = found  # type: ignore[assignment]  # checked by its capabilities
        limit, runtime = self.settings.max_attention_tokens, found.runtime.name

        def compute(_: object) -> Out:
            result = attending.attend(query.text, limit)
            selection = reduce(result.attentions, query.layers, query.heads, query.aggregate)
            return then(Attended(name, runtime, query, result, selection))

        try:
            return await self.runner.submit(name, found, compute)
        except TokenLimitError as exc:
            raise limit_error(f"{exc} (APP_MAX_ATTENTION_TOKENS)", [where, "text"],
                              f"at most {exc.limit} tokens") from None
        except SelectionError as exc:
            raise field_error(str(exc), [where, exc.field]) from None
        except AttentionUnavailable as exc:
            raise field_error(str(exc), [where, "model"], "no attention graph") from None

