"""/v2: the Open Inference Protocol (KServe v2, as Triton and KServe's model server speak it) over the service
core: health, server and model metadata, inference on every task (with the binary tensor data and
classification extensions, so that `tritonclient.http` works with its defaults) and Triton's generate extension.

What each task takes and gives is `kserve_tensors.signature`; the JSON bodies are in `app.api.schemas.kserve`.
A model has one version, its artifact's ``created_at``; every model route also answers under
``/versions/{version}``. Errors are `app.errors` kinds, which `app.api.errors` answers as ``{"error": ...}``
(400 for invalid input).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from app.api import kserve_tensors as oip
from app.api.deps import RegistryDep, ServiceDep
from app.api.docs import CLIENT_CLOSED, Responses
from app.api.schemas.kserve import (
    DEFAULT_MAX_TOKENS,
    EXTENSIONS,
    INFER_EXAMPLES,
    InferenceRequest,
    InferenceResponse,
    KServeError,
    MetadataTensor,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TextGenerateParameters,
    TextGenerateRequest,
    TextGenerateResponse,
    inline,
)
from app.api.streaming import collect, sse
from app.core.registry import Registry
from app.core.service import Service
from app.errors import InvalidInput, ModelNotFound, NotReady
from app.tasks.classification.long_text import STRATEGIES
from app.tasks.generation.sampling import SamplingParams
from app.tasks.generation.sequence import Chunk, GenerationParams
from contract import GENERATION, SENTENCE_EMBEDDING, TEXT_CLASSIFICATION, Artifact

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
probes = APIRouter(prefix="/v2/health", tags=["open inference protocol (v2)"])
"""Liveness and readiness answer without an API key, as /health/* do (orchestrators probe them keyless)."""

PLATFORMS = {"onnx": "onnx_onnxv1", "torch": "pytorch_transformers"}
ERRORS = {400: "Invalid request or tensor (the message names the input), or a limit exceeded.",
          401: "Missing or unknown API key (only when API keys are configured).",
          404: "Unknown model or version.", 413: "The body is over APP_MAX_BODY_BYTES.",
          429: "Too many requests waiting for this model (see Retry-After).",
          503: "The model (or server) is not ready: loading, warming up or failed.",
          504: "No result within APP_REQUEST_TIMEOUT_S."}


def errors(*codes: int) -> Responses:
    """The error responses of a route; ``default`` (a 500) also keeps FastAPI from listing a 422: /v2 has 400."""
    return {**{code: {"model": KServeError, "description": ERRORS[code]} for code in (401, *codes)},
            "default": {"model": KServeError, "description": "Any other error (500: an internal error)."}}


def artifact_of(registry: Registry, name: str, version: str | None) -> Artifact:
    """The artifact of model ``name`` (404 when unknown or not at ``version``; 503 when it could not be read)."""
    entry = registry.entries.get(name)
    if entry is None:
        raise ModelNotFound(f"unknown model {name!r}", available=sorted(registry.entries))
    if entry.artifact is None:
        raise NotReady(f"model {name!r} is {entry.status}" + (f": {entry.error}" if entry.error else ""))
    if version is not None and version != oip.version_of(entry.artifact):
        raise ModelNotFound(f"model {name!r} has no version {version!r} (it serves {oip.version_of(entry.artifact)})")
    return entry.artifact


async def _version(request: Request) -> str | None:
    return request.path_params.get("version")


async def _version_in_path(version: Annotated[str, Path(description="The model's version (created_at).")]) -> None:
    """Declares the path parameter of the versioned routes (the endpoints read it through `Version`)."""


Version = Annotated[str | None, Depends(_version)]


def model_route(method: str, path: str, summary: str, **kwargs: Any) -> Callable[[Any], Any]:
    """Registers an endpoint at /v2/models/{name}<path> and /v2/models/{name}/versions/{version}<path>."""
    def register(endpoint: Any) -> Any:
        router.add_api_route(f"/models/{{name}}{path}", endpoint, methods=[method], summary=summary, **kwargs)
        router.add_api_route(f"/models/{{name}}/versions/{{version}}{path}", endpoint, methods=[method],
                             summary=f"{summary}, at a version", dependencies=[Depends(_version_in_path)], **kwargs)
        return endpoint
    return register


@router.get("", response_model=ServerMetadata, responses=errors(), summary="Server metadata")
async def server_metadata(request: Request) -> ServerMetadata:
    """Name, version and the extensions served: binary tensor data, classification and generate."""
    return ServerMetadata(name="transformer-stack", version=str(request.app.version), extensions=EXTENSIONS)


@probes.get("/live", response_model=ServerLive, responses=errors(), summary="Server live")
async def live() -> ServerLive:
    return ServerLive(live=True)


@probes.get("/ready", response_model=ServerReady, responses=errors(503), summary="Server ready")
async def ready(registry: RegistryDep) -> ServerReady:
    """200 once warm-up has finished and a model serves (as /health/ready: a failed model does not block it)."""
    if not registry.ready:
        raise NotReady("models are not ready")
    return ServerReady(ready=True)


@model_route("GET", "", "Model metadata", response_model=ModelMetadata, responses=errors(404, 503))
async def model_metadata(name: str, version: Version, registry: RegistryDep) -> ModelMetadata:
    """Inputs and outputs (name, datatype, shape), the version and, in `properties`, the task and labels."""
    artifact = artifact_of(registry, name, version)
    inputs, outputs = oip.signature(artifact)
    properties = {"task": artifact.task, "max_length": str(artifact.max_length)}
    if artifact.task == TEXT_CLASSIFICATION:
        properties["labels"] = json.dumps(artifact.labels, ensure_ascii=False)
    elif artifact.task == SENTENCE_EMBEDDING:
        properties["dimension"] = str(outputs[0].shape[1])
    return ModelMetadata(
        name=name, versions=[oip.version_of(artifact)], properties=properties,
        platform=PLATFORMS.get(registry.settings.runtime, registry.settings.runtime),
        inputs=[MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in inputs],
        outputs=[MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in outputs])


@model_route("GET", "/ready", "Model ready", response_model=ModelReady, responses=errors(404, 503))
async def model_ready(name: str, version: Version, registry: RegistryDep) -> ModelReady:
    """200 when the model serves; 503 while it loads or warms up or when it failed; 404 when unknown."""
    registry.get(name, artifact_of(registry, name, version).task)
    return ModelReady(name=name, ready=True)


BINARY = {"schema": {"type": "string", "format": "binary"}}
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline(InferenceRequest.model_json_schema()), "examples": INFER_EXAMPLES},
    "application/octet-stream": {**BINARY, "description": (
        f"Binary tensor data extension: the JSON request ({oip.HEADER_LENGTH} bytes), then each input with "
        "`parameters.binary_data_size` as raw bytes (BYTES: 4-byte little-endian length + bytes per element).")}}}}
INFER_RESPONSES: Responses = {**errors(400, 404, 413, 429, 503, 504), 200: {
    "content": {"application/octet-stream": BINARY}, "description": "JSON; or, when an output is asked as binary "
    f"data, the JSON header (its length in {oip.HEADER_LENGTH}) followed by the binary outputs."}}


@model_route("POST", "/infer", "Inference", response_model=InferenceResponse, responses=INFER_RESPONSES,
             openapi_extra=INFER_BODY)
async def infer(name: str, version: Version, request: Request, service: ServiceDep) -> Response:
    """Classifiers: `text` (BYTES [N]) -> `label` (BYTES [N]), `probabilities` (FP32 [N, labels]; with the output
    parameter `classification: k`, the top k as BYTES `"<p>:<index>:<label>"`). Embedders: `text` ->
    `embedding` (FP32 [N, dimension]). Generators: `text_input` (BYTES [1]) -> `text_output` (BYTES [1]), with
    `max_tokens`, `temperature`, `top_k`, `top_p`, `repetition_penalty`, `seed`, `stop` as request parameters.

    Inputs may come as JSON or as binary data (`Inference-Header-Content-Length`); outputs come as binary data
    when their `binary_data` (or the request's `binary_data_output`) is true. Texts are batched with
    concurrent requests, as on /v1."""
    artifact = artifact_of(service.registry, name, version)
    service.registry.get(name, artifact.task)  # 503 before the body is read
    inputs, outputs = oip.signature(artifact)
    body, blobs = oip.read_request(await request.body(), request.headers.get(oip.HEADER_LENGTH))
    texts = oip.read_texts(body, blobs, inputs)
    wanted = oip.wanted_outputs(body, outputs, "probabilities" if artifact.task == TEXT_CLASSIFICATION else None)
    if artifact.task == GENERATION:
        try:
            parameters = TextGenerateParameters.model_validate(body.parameters or {})
        except ValidationError as exc:
            raise oip.invalid_body(exc, "parameters") from None
        chunks = _start(service, name, texts["text_input"][0], parameters, False)
        if (final := service.finished(await collect(chunks, request))) is None:
            return Response(status_code=CLIENT_CLOSED)
        tensors = {"text_output": oip.Tensor("text_output", oip.BYTES, [1], [final.text])}
    else:
        tensors = await _predict(service, artifact.task, name, texts["text"], wanted, body.parameters or {})
    return oip.infer_response(name, oip.version_of(artifact), body.id, [tensors[w.name] for w in wanted],
                              {w.name: w.binary for w in wanted})


async def _predict(service: Service, task: str, name: str, texts: list[str], wanted: list[oip.Wanted],
                   parameters: dict[str, Any]) -> dict[str, oip.Tensor]:
    """The outputs of a batched task for ``texts`` (through the service core: limits, batching, metrics); a
    classifier reads long texts as the request parameter ``long_text`` says."""
    if not texts:
        raise InvalidInput("input 'text' has no elements")
    loc: list[str | int] = ["body", "inputs", 0, "data"]
    long_text = parameters.get("long_text")
    if long_text is not None and long_text not in STRATEGIES:
        raise InvalidInput(f"parameter 'long_text' must be one of {', '.join(STRATEGIES)}, not {long_text!r}")
    try:
        if task == SENTENCE_EMBEDDING:
            _, results = await service.predict(task, name, texts, loc)
        else:
            _, results = await service.classify(name, texts, loc, long_text=long_text)
    except InvalidInput as exc:
        raise InvalidInput(f"input 'text': {exc.message}", **exc.extra) from None
    if task == SENTENCE_EMBEDDING:
        vectors = np.stack([r.vector for r in results]).astype(np.float32)
        return {"embedding": oip.Tensor("embedding", oip.FP32, list(vectors.shape), vectors)}
    labels = list(results[0].scores)
    probabilities = np.array([[p.scores[label] for label in labels] for p in results], dtype=np.float32)
    top = next((w.classification for w in wanted if w.name == "probabilities"), 0)
    return {"label": oip.Tensor("label", oip.BYTES, [len(results)], [p.label for p in results]),
            "probabilities": oip.classify(probabilities, labels, top, "probabilities") if top else
            oip.Tensor("probabilities", oip.FP32, list(probabilities.shape), probabilities)}


def _start(service: Service, name: str, text: str, parameters: TextGenerateParameters | None,
           streamed: bool) -> AsyncIterator[Chunk]:
    """Start a generation (limits checked, prompt tokenised) with the generate extension's parameters."""
    p = parameters or TextGenerateParameters()
    max_tokens = p.max_tokens or min(DEFAULT_MAX_TOKENS, service.settings.max_new_tokens)
    try:
        prompt = service.prompt(name, text, max_tokens, "max_tokens")
    except InvalidInput as exc:
        if exc.extra.get("detail", [{}])[0].get("loc", [""])[-1] != "prompt":
            raise
        raise InvalidInput(f"input 'text_input': {exc.message}", **exc.extra) from None
    sampling = SamplingParams(temperature=p.temperature, top_k=p.top_k, top_p=p.top_p,
                              repetition_penalty=p.repetition_penalty)
    params = GenerationParams(max_new_tokens=max_tokens, sampling=sampling, stop=p.stops(), seed=p.seed)
    return service.generate(prompt, params, streamed)


@model_route("POST", "/generate", "Generate text (generate extension)", response_model=TextGenerateResponse,
             response_model_exclude_none=True, responses=errors(400, 404, 413, 429, 503, 504))
async def generate(name: str, version: Version, body: TextGenerateRequest, request: Request, service: ServiceDep
                   ) -> TextGenerateResponse | Response:
    """`text_input` and sampling `parameters` -> `text_output`, the text after the prompt."""
    model_version = oip.version_of(artifact_of(service.registry, name, version))
    chunks = _start(service, name, body.text_input, body.parameters, False)
    if (final := service.finished(await collect(chunks, request))) is None:
        return Response(status_code=CLIENT_CLOSED)
    return TextGenerateResponse(id=body.id, model_name=name, model_version=model_version, text_output=final.text)


STREAM = {"content": {"text/event-stream": {}}, "description": 'Server-sent events: `data: {"model_name", '
          '"model_version", "text_output": <new text>}` per chunk; `data: {"error": ...}` when the generation '
          "fails or times out once started."}


@model_route("POST", "/generate_stream", "Generate text as server-sent events (generate extension)",
             response_class=StreamingResponse, responses={**errors(400, 404, 413, 429, 503, 504), 200: STREAM})
async def generate_stream(name: str, version: Version, body: TextGenerateRequest, service: ServiceDep
                          ) -> StreamingResponse:
    """As /generate, one `data:` event per chunk of new text; the events' `text_output` joined is the text."""
    head = {"id": body.id} if body.id is not None else {}
    head |= {"model_name": name, "model_version": oip.version_of(artifact_of(service.registry, name, version))}
    chunks = _start(service, name, body.text_input, body.parameters, True)
    return StreamingResponse(_events(head, chunks, service.settings.request_timeout_s),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _events(head: dict[str, Any], chunks: AsyncIterator[Chunk], timeout_s: float) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            if chunk.text or chunk.finish_reason is not None:
                yield sse({**head, "text_output": chunk.text})
            if chunk.finish_reason == "timeout":
                yield sse({"error": f"the generation did not finish within {timeout_s:g} s"})
    except Exception as exc:  # the status line is sent already: report in-band, log the cause
        log.error("generation with %s failed mid-stream", head["model_name"], exc_info=exc)
        yield sse({"error": "generation failed"})
