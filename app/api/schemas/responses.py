"""Response bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.settings import LongTextStrategy


class SentimentResult(BaseModel):
    label: str = Field(description="The most probable label, e.g. negative or positive.")
    score: float = Field(ge=0, le=1, description="Probability of `label`.")
    scores: dict[str, float] = Field(description="Probability of every label (sums to 1).")
    truncated: bool = Field(description="Some tokens of the text were not read: it was longer than the model's "
                                        "max_length tokens and read with truncate or head+tail.")
    strategy: LongTextStrategy = Field(description="How the text was read: truncate, head+tail or chunks.")
    chunks: int = Field(ge=1, description="Windows of at most max_length tokens the model read (more than 1 only "
                                          "for a long text read with chunks).")


class SentimentResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "sentiment-minilm",
        "results": [{"label": "positive", "score": 0.97, "scores": {"negative": 0.03, "positive": 0.97},
                     "truncated": False, "strategy": "chunks", "chunks": 1}],
    }]})

    model: str = Field(description="The model that answered.")
    results: list[SentimentResult] = Field(description="One result per input text, in input order.")


class ModelInfo(BaseModel):
    id: str = Field(description="The model's name (OpenAI's field).")
    object: Literal["model"] = "model"
    created: int = Field(0, description="Unix time of the artifact's export (0 when unknown).")
    owned_by: str = "transformer-stack"
    name: str
    status: str = Field(description="building (expected, not in the models dir yet) | loading | warming | ready "
                                    "| failed")
    task: str | None = Field(None, description="text-classification | text-generation | sentence-embedding")
    backend: str | None = Field(None, description="The runtime the model runs on: onnx or torch.")
    device: str | None = None
    version: str | None = Field(None, description="The artifact's created_at (it identifies the export).")
    manifest_sha256: str | None = Field(None, description="sha256 of the manifest.json being served.")
    schema_version: str | None = None
    labels: list[str] = Field(default_factory=list)
    max_length: int | None = Field(None, description="Tokens read per text; longer texts are truncated.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Test metrics from the manifest.")
    runtime: dict[str, Any] = Field(default_factory=dict, description="Engine details (providers, dtype).")
    error: str | None = Field(None, description="Why the model failed, when it did.")
    capabilities: list[str] = Field(default_factory=list,
                                    description="What the model serves beyond its task (attention: /v1/attention).")


class ModelsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"object": "list", "data": [], "models": [{
        "name": "sentiment-minilm", "status": "ready", "task": "text-classification", "backend": "onnx",
        "device": "cpu", "version": "2025-01-01T00:00:00+00:00", "schema_version": "1.0",
        "labels": ["negative", "positive"], "max_length": 128, "metrics": {"test_accuracy": 0.88},
        "runtime": {"providers": ["CPUExecutionProvider"]}, "error": None,
        "capabilities": ["attention"], "id": "sentiment-minilm", "object": "model", "created": 1735689600,
        "owned_by": "transformer-stack"}]}]})

    object: Literal["list"] = "list"
    data: list[ModelInfo] = Field(description="The models, as OpenAI's `models.list()` reads them.")
    models: list[ModelInfo] = Field(description="The same models (this service's own field).")


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready",
                                                               "models": {"sentiment-minilm": "ready"}}]})

    status: str
    models: dict[str, str] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"error": "unknown model 'nope'", "code": "model_not_found", "request_id": "3f2a9c0d1e5b4a7c"}]})

    error: str = Field(description="What went wrong, for humans.")
    code: str = Field(description="Stable machine-readable code.")
    request_id: str = Field(description="Echo of X-Request-ID (generated when absent).")
    detail: list[dict[str, Any]] | None = Field(None, description="Field-level problems (422 only).")


class ClassificationPrediction(BaseModel):
    type: Literal["classification"] = Field("classification", description="Variant tag of the prediction.")
    label: str = Field(description="The most probable label.")
    score: float = Field(ge=0, le=1, description="Probability of `label`.")
    scores: dict[str, float] = Field(description="Probability of every label (sums to 1).")


class NextTokenCandidate(BaseModel):
    id: int = Field(description="Token id.")
    token: str = Field(description="The token as the vocabulary spells it (e.g. `Ġsea` for a byte-level BPE).")
    text: str = Field(description="The token decoded on its own (e.g. ` sea`).")
    probability: float = Field(ge=0, le=1, description="Its probability as the next token (softmax of the "
                                                        "logits, no sampling settings applied).")


class NextTokenPrediction(BaseModel):
    type: Literal["next_token"] = Field("next_token", description="Variant tag of the prediction.")
    top_k: list[NextTokenCandidate] = Field(description="The most probable next tokens after the text, most "
                                                        "probable first (5).")


# A union tagged by `type`: classifiers answer `classification`, text generators `next_token`.
AttentionPrediction = Annotated[ClassificationPrediction | NextTokenPrediction, Field(
    discriminator="type", description="The model's prediction for the text, tagged by `type`.")]


class ExpertRouting(BaseModel):
    layers: list[int] = Field(description="The layers `experts` covers: the selected layers (as in `layers`).")
    experts: list[list[list[int]]] = Field(
        description="experts[layer][token]: the experts that token was routed to in that layer, best first (the "
                    "router's top-k), e.g. [[[2, 0], [1, 3]]] for one layer, two tokens, top-2.")


class AttentionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "sentiment-minilm", "backend": "onnx", "tokens": ["[CLS]", "great", "[SEP]"],
        "num_layers": 6, "num_heads": 12, "layers": [5], "heads": [0], "aggregate": "none",
        "attentions": [[[[0.5, 0.2, 0.3], [0.1, 0.8, 0.1], [0.4, 0.1, 0.5]]]],
        "prediction": {"type": "classification", "label": "positive", "score": 0.98,
                       "scores": {"negative": 0.02, "positive": 0.98}},
    }, {
        "model": "gpt2-quick", "backend": "onnx", "tokens": ["The", "Ġsea"], "num_layers": 4, "num_heads": 4,
        "layers": [3], "heads": [0], "aggregate": "none", "attentions": [[[[1.0, 0.0], [0.35, 0.65]]]],
        "prediction": {"type": "next_token", "top_k": [
            {"id": 11, "token": ",", "text": ",", "probability": 0.21},
            {"id": 7, "token": "Ġwas", "text": " was", "probability": 0.06}]},
    }]})

    model: str = Field(description="The model that answered.")
    backend: str = Field(description="The engine that computed the attentions (onnx or torch).")
    tokens: list[str] = Field(description="The tokens as the model sees them, special tokens included.")
    num_layers: int = Field(description="Layers of the model.")
    num_heads: int = Field(description="Attention heads per layer of the model.")
    layers: list[int] = Field(description="The selected layer indices (the first axis of `attentions` when "
                                          "aggregate is none or mean; the layers rolled through for rollout).")
    heads: list[int] = Field(description="The selected head indices (the second axis when aggregate is none; "
                                         "the heads averaged for mean and rollout).")
    aggregate: str = Field(description="none, mean or rollout.")
    attentions: list[list[list[list[float]]]] = Field(
        description="attentions[layer][head][query][key], rows sum to 1 (6 decimals). Shapes: none "
                    "[layers, heads, seq, seq]; mean [layers, 1, seq, seq]; rollout [1, 1, seq, seq].")
    prediction: AttentionPrediction
    routing: ExpertRouting | None = Field(None, description="Mixture-of-Experts models only (null for every other "
                                                           "model): which experts each token was routed to.")
