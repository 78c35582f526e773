"""POST /v1/attention (JSON or PNG) and GET /v1/attention.png, for classifiers and text generators."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import ServiceDep
from app.api.docs import MODEL_ERRORS
from app.api.heatmap import render_png
from app.api.schemas.requests import AttentionImageQuery, AttentionRequest
from app.api.schemas.responses import (
    AttentionResponse,
    ClassificationPrediction,
    ExpertRouting,
    NextTokenCandidate,
    NextTokenPrediction,
)
from app.core.service import Attended, AttentionQuery
from app.errors import field_error
from app.tasks.attention import TopKPrediction

router = APIRouter(prefix="/v1", tags=["attention"])

DECIMALS = 6
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}},
                                              "description": "The heatmap (format=png, or GET attention.png)."}}


def indices(values: list[int]) -> str:
    """``0, 2, 5``, or ``0-29`` for a run of more than two consecutive indices (titles of deep models fit)."""
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))


def title(attended: Attended) -> str:
    layers, heads = attended.selection.layers, attended.selection.heads
    aggregate, model = attended.query.aggregate, attended.model
    if aggregate == "rollout":
        return f"{model}: rollout through layers {indices(layers)} (mean of {len(heads)} heads)"
    if aggregate == "mean":
        return f"{model}: layer {layers[0]}, mean of heads {indices(heads)}"
    return f"{model}: layer {layers[0]}, head {heads[0]}"


def renderer(where: str) -> Any:
    """Draw the one matrix the request selects (worker thread); a selection of several is a 422 in ``where``."""
    def render(attended: Attended) -> bytes:
        matrices = attended.selection.attentions
        if matrices.shape[:2] != (1, 1):
            raise field_error(
                f"a PNG shows one matrix, the selection has {matrices.shape[0]} layer(s) x {matrices.shape[1]} "
                f"matrices: select one layer and one head, one layer with aggregate=mean, or aggregate=rollout",
                [where, "layers"], "select a single matrix")
        return render_png(matrices[0, 0], attended.result.tokens, title(attended))

    return render


def to_prediction(prediction: Any) -> ClassificationPrediction | NextTokenPrediction:
    if isinstance(prediction, TopKPrediction):
        return NextTokenPrediction(top_k=[NextTokenCandidate(id=c.id, token=c.token, text=c.text,
                                                             probability=c.probability) for c in prediction.top_k])
    return ClassificationPrediction(label=prediction.label, score=prediction.score, scores=prediction.scores)


def to_response(attended: Attended) -> AttentionResponse:
    result, selection = attended.result, attended.selection
    routing = None if result.experts is None else ExpertRouting(
        layers=selection.layers, experts=result.experts[selection.layers].tolist())
    return AttentionResponse(
        model=attended.model, backend=attended.runtime, tokens=result.tokens,
        num_layers=result.attentions.shape[0], num_heads=result.attentions.shape[1],
        layers=selection.layers, heads=selection.heads, aggregate=attended.query.aggregate,
        attentions=selection.attentions.round(DECIMALS).tolist(), prediction=to_prediction(result.prediction),
        routing=routing)


def query_of(request: AttentionRequest) -> AttentionQuery:
    return AttentionQuery(text=request.text, model=request.model, layers=request.layers, heads=request.heads,
                          aggregate=request.aggregate)


@router.post("/attention", response_model=AttentionResponse, responses={**MODEL_ERRORS, **PNG},
             summary="Attention weights of one text, as JSON or as a PNG heatmap")
async def attention(body: AttentionRequest, service: ServiceDep,
                    output: Annotated[Literal["json", "png"], Query(alias="format", description=(
                        "json, or png: a heatmap of the one matrix the body selects"))] = "json",
                    ) -> AttentionResponse | Response:
    """The tokens the model sees (special tokens included), `attentions[layer][head][query][key]` (rows sum
    to 1) for the selected layers/heads or their aggregate, and the model's prediction: for a classifier
    `type: classification` (label and scores), for a text generator `type: next_token` (the 5 most probable
    next tokens; its attentions are causal: zero above the diagonal). A Mixture-of-Experts model adds `routing`:
    the experts each token was routed to in each selected layer (null for other models).

    With no `model`: `APP_DEFAULT_MODEL`, else the first ready sentiment model, else the first ready model.
    A generator served by the onnx backend needs its attention graph (`model.attn.onnx`, artifacts of schema
    1.2 and later; loaded on its first attention request): without one the answer is 422 on `model`.

    Limit: texts over `APP_MAX_ATTENTION_TOKENS` tokens (default 64, special tokens included; or over the
    model's `max_length`) are rejected with 422, never truncated: payloads grow as layers x heads x tokens².
    Layer or head indices the model does not have are a 422 too. With `format=png` the selection must be one
    matrix: one layer and one head, one layer with `aggregate=mean`, or `aggregate=rollout`.
    """
    if output == "png":
        return Response(await service.attention(query_of(body), "body", renderer("body")), media_type="image/png")
    return await service.attention(query_of(body), "body", to_response)


@router.get("/attention.png", response_class=Response, responses={**MODEL_ERRORS, **PNG},
            summary="PNG heatmap of one attention matrix, with the tokens on both axes")
async def attention_png(query: Annotated[AttentionImageQuery, Query()], service: ServiceDep) -> Response:
    """`aggregate=none`: head `head` of layer `layer`; `mean`: the mean of layer `layer`'s heads; `rollout`:
    attention rollout through every layer. Same token cap (422) as POST /v1/attention."""
    png = await service.attention(query_of(query.to_request()), "query", renderer("query"))
    return Response(png, media_type="image/png")
