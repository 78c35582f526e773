"""JSON bodies of /v2, the Open Inference Protocol (KServe v2 / Triton): server and model metadata, health, the
inference request and response, the generate extension, and the error envelope ``{"error": ...}``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

EXTENSIONS = ["binary_tensor_data", "classification", "generate"]
DEFAULT_MAX_TOKENS = 20
"""The generate extension's default ``max_tokens`` (capped at APP_MAX_NEW_TOKENS)."""
VERSION = "2025-01-31T12:00:00+00:00"  # in examples
Parameters = dict[str, StrictBool | StrictInt | StrictFloat | StrictStr]
"""The protocol's ``$parameters``: names to a string, number or boolean."""


class KServeError(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "input 'text' has datatype FP32; the "
                                                                         "model takes BYTES"}]})

    error: str = Field(description="What went wrong.")


class ServerMetadata(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "transformer-stack", "version": "0.1.0", "extensions": list[Any](EXTENSIONS)}]})

    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size.")


class ModelMetadata(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "sentiment-minilm", "versions": [VERSION], "platform": "onnx_onnxv1",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "properties": {"task": "text-classification", "labels": '["negative", "positive"]', "max_length": "128"}}]})

    name: str
    versions: list[str] = Field(description="The one version served: the artifact's created_at.")
    platform: str = Field(description="onnx_onnxv1 (ONNX Runtime) or pytorch_transformers (PyTorch).")
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    properties: dict[str, str] = Field(description="task, max_length; labels (a JSON array, in the order of the "
                                                   "columns of `probabilities`) or dimension.")


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(description="The whole shape, batch included.")
    datatype: str = Field(description="BYTES for text.")
    parameters: Parameters | None = Field(None, description="`binary_data_size`: the tensor's bytes follow the "
                                                            "JSON header (binary tensor data extension).")
    data: list[Any] | None = Field(None, description="Row-major elements, flat or nested as the shape; absent "
                                                     "when the tensor is sent as binary data.")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: Parameters | None = Field(None, description="`binary_data` (bool): return it as binary data; "
                                                            "`classification` (int): its top k as BYTES.")


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, description="Echoed in the response.")
    parameters: Parameters | None = Field(None, description="`binary_data_output` (bool): every output as binary "
                                                            "data unless it says otherwise; classifiers: "
                                                            "`long_text` (truncate, head+tail or chunks, as on "
                                                            "/v1/sentiment); generators: "
                                                            "`max_tokens`, `temperature`, `top_k`, `top_p`, "
                                                            "`repetition_penalty`, `seed`, `stop`.")
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="The outputs to return (all when absent).")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(None, description="`binary_data_size` when the data follows the header.")
    data: list[Any] | None = Field(None, description="Flat, row-major; absent for a binary output.")


class InferenceResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model_name": "sentiment-minilm", "model_version": VERSION, "id": "42", "outputs": [
            {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["positive", "negative"]},
            {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.03, 0.97, 0.91, 0.09]}]}]})

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


def _texts(name: str, *texts: str) -> dict[str, Any]:
    return {"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}


INFER_EXAMPLES = {
    "classifier": {"summary": "Classify two texts", "value": {
        "id": "42", "inputs": [_texts("text", "A warm, funny film.", "Dull and far too long.")]}},
    "classifier-top-1": {"summary": "The top label and its probability (classification extension)", "value": {
        "inputs": [_texts("text", "A warm, funny film.")],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]}},
    "embedder": {"summary": "Embed two texts", "value": {"inputs": [_texts("text", "A warm film.", "A fine one.")]}},
    "generator": {"summary": "Continue a prompt", "value": {
        "inputs": [_texts("text_input", "Call me Ishmael.")], "parameters": {"max_tokens": 20, "seed": 7}}},
}


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined, to stand alone in the OpenAPI document (the inference
    request is read by hand, binary data included, so FastAPI does not list it among the components)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(item) for item in node] if isinstance(node, list) else node

    return dict(resolve(schema))


class TextGenerateParameters(BaseModel):
    """Sampling parameters (others, e.g. Triton's own, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    max_tokens: int | None = Field(None, gt=0, description=f"Tokens to generate at most (default "
                                                           f"{DEFAULT_MAX_TOKENS}, <= APP_MAX_NEW_TOKENS).")
    temperature: float = Field(1.0, ge=0, le=5, description="0 = greedy.")
    top_k: int = Field(0, ge=0, description="0 = all tokens.")
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    seed: int | None = Field(None, ge=0, description="Same seed and parameters, same text.")
    stop: str | list[str] | None = Field(None, description="Up to 4 non-empty strings that end the text.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or not all(stops):
            raise ValueError("at most 4 non-empty stop strings")
        return value

    def stops(self) -> tuple[str, ...]:
        return tuple([self.stop] if isinstance(self.stop, str) else self.stop or [])


class TextGenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"id": "42", "text_input": "Call me Ishmael.", "parameters": {"max_tokens": 20, "temperature": 0}}]})

    id: str | None = Field(None, description="Echoed in the response.")
    text_input: str = Field(description="The prompt.")
    parameters: TextGenerateParameters | None = None

    @field_validator("text_input")
    @classmethod
    def _utf8(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text_input is not valid UTF-8 (it holds a lone surrogate)") from None
        return value


class TextGenerateResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "42", "model_name": "gpt2-moby", "model_version": VERSION, "text_output": " and the sea was calm"}]})

    id: str | None = None
    model_name: str
    model_version: str
    text_output: str
