"""POST /v1/attention (JSON or PNG) and GET /v1/attention.png, for classifiers and text generators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Response

from app.api.deps import RegistryDep, RunnerDep, SettingsDep
from app.api.routes.sentiment import ERRORS, limit_error
from app.attention import Selection, SelectionError, reduce
from app.attention_plot import render_png
from app.backends.base import AttentionResult, AttentionUnavailable, Backend, TokenLimitError, TopKPrediction
from app.backends.generation.attention import AttendingGenerator
from app.backends.text import Prediction
from app.core.config import Settings
from app.core.errors import InvalidInput
from app.inference import InferenceRunner
from app.registry import Registry
from app.schemas.requests import AttentionImageQuery, AttentionRequest
from app.schemas.responses import (
    AttentionResponse,
    ClassificationPrediction,
    NextTokenCandidate,
    NextTokenPrediction,
)

router = APIRouter(prefix="/v1", tags=["attention"])

Out = TypeVar("Out")
DECIMALS = 6
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}},
                                              "description": "The heatmap (format=png, or GET attention.png)."}}


@dataclass(frozen=True)
class Job:
    """One attention request, ready for a worker thread."""

    model: str
    backend: Backend | AttendingGenerator
    request: AttentionRequest
    max_tokens: int
    where: str


@dataclass(frozen=True)
class Computed:
    job: Job
    result: AttentionResult
    selection: Selection


def compute(job: Job) -> Computed:
    """Model forward, then selection and aggregation (worker thread)."""
    result = job.backend.attend(job.request.text, job.max_tokens)
    selection = reduce(result.attentions, job.request.layers, job.request.heads, job.request.aggregate)
    return Computed(job=job, result=result, selection=selection)


def indices(values: list[int]) -> str:
    """``0, 2, 5``, or ``0-29`` for a run of more than two consecutive indices (titles of deep models fit)."""
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))


def title(computed: Computed) -> str:
    layers, heads = computed.selection.layers, computed.selection.heads
    aggregate, model = computed.job.request.aggregate, computed.job.model
    if aggregate == "rollout":
        return f"{model}: rollout through layers {indices(layers)} (mean of {len(heads)} heads)"
    if aggregate == "mean":
        return f"{model}: layer {layers[0]}, mean of heads {indices(heads)}"
    return f"{model}: layer {layers[0]}, head {heads[0]}"


def render(job: Job) -> bytes:
    """Compute and draw the one matrix the request selects (worker thread)."""
    computed = compute(job)
    matrices = computed.selection.attentions
    if matrices.shape[:2] != (1, 1):
        raise InvalidInput(
            f"a PNG shows one matrix, the selection has {matrices.shape[0]} layer(s) x {matrices.shape[1]} "
            f"matrices: select one layer and one head, one layer with aggregate=mean, or aggregate=rollout",
            detail=[{"loc": [job.where, "layers"], "msg": "select a single matrix", "type": "value_error"}])
    return render_png(matrices[0, 0], computed.result.tokens, title(computed))


def to_prediction(prediction: Prediction | TopKPrediction) -> ClassificationPrediction | NextTokenPrediction:
    if isinstance(prediction, TopKPrediction):
        return NextTokenPrediction(top_k=[NextTokenCandidate(id=c.id, token=c.token, text=c.text,
                                                             probability=c.probability) for c in prediction.top_k])
    return ClassificationPrediction(label=prediction.label, score=prediction.score, scores=prediction.scores)


def to_response(computed: Computed) -> AttentionResponse:
    result, selection, job = computed.result, computed.selection, computed.job
    return AttentionResponse(
        model=job.model, backend=job.backend.kind, tokens=result.tokens,
        num_layers=result.attentions.shape[0], num_heads=result.attentions.shape[1],
        layers=selection.layers, heads=selection.heads, aggregate=job.request.aggregate,
        attentions=selection.attentions.round(DECIMALS).tolist(), prediction=to_prediction(result.prediction))


def make_job(request: AttentionRequest, registry: Registry, settings: Settings, where: str) -> Job:
    chars = settings.max_text_chars
    if len(request.text) > chars:
        raise limit_error(f"text is too long: {len(request.text)} > {chars} characters", [where, "text"],
                          f"at most {chars} characters")
    name, backend = registry.get_any(request.model)
    if not isinstance(backend, Backend | AttendingGenerator):
        raise InvalidInput(f"model {name!r} does not serve attention maps",
                           detail=[{"loc": [where, "model"], "msg": "no attention maps", "type": "value_error"}])
    return Job(model=name, backend=backend, request=request, max_tokens=settings.max_attention_tokens,
               where=where)


async def execute(runner: InferenceRunner, work: Callable[[Job], Out], job: Job) -> Out:
    """``work(job)`` on the runner; a text over the token cap, a bad index or a model without attention on this
    engine becomes a 422."""
    try:
        return await runner.run(work, job)
    except TokenLimitError as exc:
        raise limit_error(f"{exc} (APP_MAX_ATTENTION_TOKENS)", [job.where, "text"],
                          f"at most {exc.limit} tokens") from None
    except SelectionError as exc:
        raise InvalidInput(str(exc), detail=[{"loc": [job.where, exc.field], "msg": str(exc),
                                              "type": "value_error"}]) from None
    except AttentionUnavailable as exc:
        raise InvalidInput(str(exc), detail=[{"loc": [job.where, "model"], "msg": "no attention graph",
                                              "type": "value_error"}]) from None


@router.post("/attention", response_model=AttentionResponse, responses={**ERRORS, **PNG},
             summary="Attention weights of one text, as JSON or as a PNG heatmap")
async def attention(body: AttentionRequest, registry: RegistryDep, runner: RunnerDep, settings: SettingsDep,
                    output: Annotated[Literal["json", "png"], Query(alias="format", description=(
                        "json, or png: a heatmap of the one matrix the body selects"))] = "json",
                    ) -> AttentionResponse | Response:
    """The tokens the model sees (special tokens included), `attentions[layer][head][query][key]` (rows sum
    to 1) for the selected layers/heads or their aggregate, and the model's prediction: for a classifier
    `type: classification` (label and scores), for a text generator `type: next_token` (the 5 most probable
    next tokens; its attentions are causal: zero above the diagonal).

    With no `model`: `APP_DEFAULT_MODEL`, else the first ready sentiment model, else the first ready model.
    A generator served by the onnx backend needs its attention graph (`model.attn.onnx`, artifacts of schema
    1.2 and later; loaded on its first attention request): without one the answer is 422 on `model`.

    Limit: texts over `APP_MAX_ATTENTION_TOKENS` tokens (default 64, special tokens included; or over the
    model's `max_length`) are rejected with 422, never truncated: payloads grow as layers x heads x tokens².
    Layer or head indices the model does not have are a 422 too. With `format=png` the selection must be one
    matrix: one layer and one head, one layer with `aggregate=mean`, or `aggregate=rollout`.
    """
    job = make_job(body, registry, settings, "body")
    if output == "png":
        return Response(await execute(runner, render, job), media_type="image/png")
    return to_response(await execute(runner, compute, job))


@router.get("/attention.png", response_class=Response, responses={**ERRORS, **PNG},
            summary="PNG heatmap of one attention matrix, with the tokens on both axes")
async def attention_png(query: Annotated[AttentionImageQuery, Query()], registry: RegistryDep,
                        runner: RunnerDep, settings: SettingsDep) -> Response:
    """`aggregate=none`: head `head` of layer `layer`; `mean`: the mean of layer `layer`'s heads; `rollout`:
    attention rollout through every layer. Same token cap (422) as POST /v1/attention."""
    job = make_job(query.to_request(), registry, settings, "query")
    return Response(await execute(runner, render, job), media_type="image/png")
