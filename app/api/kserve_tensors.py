"""Tensors of the Open Inference Protocol (KServe v2 / Triton) over HTTP: what a model takes and gives per task,
JSON tensor data, and Triton's binary tensor data extension (the JSON header, its length in the
``Inference-Header-Content-Length`` header, then each binary tensor's bytes in order: little-endian, row-major,
BYTES elements as a 4-byte little-endian length and the bytes).

Decoding raises `InvalidInput` (or a request validation error) naming the input or output at fault;
`app.api.errors` answers both with 400 ``{"error": ...}`` on /v2.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import Response

from app.api.schemas.kserve import InferenceRequest
from app.errors import InvalidInput
from contract import GENERATION, SENTENCE_EMBEDDING, Artifact

HEADER_LENGTH = "Inference-Header-Content-Length"
BYTES, FP32 = "BYTES", "FP32"


def invalid_body(exc: ValidationError, *prefix: str | int) -> RequestValidationError:
    """pydantic's errors about (part of) the body, located as FastAPI locates its own."""
    return RequestValidationError([{**err, "loc": ("body", *prefix, *err["loc"])} for err in exc.errors(
        include_url=False, include_context=False, include_input=False)])


@dataclass(frozen=True)
class TensorSpec:
    """A model's input or output as its metadata describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: list[str] | npt.NDArray[np.float32]


@dataclass(frozen=True)
class Wanted:
    """An output to return, as binary data or JSON, with its top ``classification`` (0 = the tensor itself)."""

    name: str
    binary: bool
    classification: int = 0


def version_of(artifact: Artifact) -> str:
    """A model's one version: its artifact's ``created_at``."""
    return str(artifact.manifest.get("created_at") or "1")


def signature(artifact: Artifact) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A model's inputs and outputs, by its task."""
    if artifact.task == GENERATION:
        return [TensorSpec("text_input", BYTES, (1,))], [TensorSpec("text_output", BYTES, (1,))]
    text = [TensorSpec("text", BYTES, (-1,))]
    if artifact.task == SENTENCE_EMBEDDING:
        return text, [TensorSpec("embedding", FP32, (-1, int(artifact.manifest["embedding"]["dimension"])))]
    return text, [TensorSpec("label", BYTES, (-1,)), TensorSpec("probabilities", FP32, (-1, len(artifact.labels)))]


def read_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, list[bytes | None]]:
    """The JSON header of ``body`` and each input's binary data (None where it is given as JSON data)."""
    header, rest = body, b""
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or not 0 < int(header_length) <= len(body):
            raise InvalidInput(f"{HEADER_LENGTH} must be the length of the JSON header, between 1 and the body's "
                               f"{len(body)} bytes; got {header_length!r} (raw binary requests are not supported)")
        header, rest = body[:int(header_length)], body[int(header_length):]
    try:  # the standard JSON parser, as for every other route: a "\ud800" escape parses, the core refuses it
        request = InferenceRequest.model_validate(json.loads(header))
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise InvalidInput(f"Invalid JSON in the request header: {exc}") from None
        raise invalid_body(exc) from None
    blobs: list[bytes | None] = []
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size must be a non-negative integer")
        if size is not None and tensor.data is not None:
            raise InvalidInput(f"input {tensor.name!r} has both JSON data and binary_data_size")
        if size is not None and offset + size > len(rest):
            raise InvalidInput(f"input {tensor.name!r}: binary_data_size {size} goes past the end of the body "
                               f"({len(rest) - offset} bytes of binary data left)")
        blobs.append(None if size is None else rest[offset:offset + size])
        offset += size or 0
    if offset != len(rest):
        raise InvalidInput(f"the body has {len(rest)} bytes of binary data after the JSON header but the inputs' "
                           f"binary_data_size add up to {offset}")
    return request, blobs


def read_texts(request: InferenceRequest, blobs: list[bytes | None], specs: list[TensorSpec]) -> dict[str, list[str]]:
    """The elements of every input the model takes (all BYTES, decoded as UTF-8), checked against its metadata."""
    known = {spec.name: spec for spec in specs}
    takes = ", ".join(f"{s.name!r} ({s.datatype} {list(s.shape)})" for s in specs)
    found: dict[str, list[str]] = {}
    for tensor, blob in zip(request.inputs, blobs, strict=True):
        where, spec = f"input {tensor.name!r}", known.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"unknown {where}: the model takes {takes}")
        if tensor.name in found:
            raise InvalidInput(f"{where} is given twice")
        if tensor.datatype != spec.datatype:
            raise InvalidInput(f"{where} has datatype {tensor.datatype}; the model takes {spec.datatype}")
        if len(tensor.shape) != len(spec.shape) or any(d not in (-1, n) for n, d in zip(tensor.shape, spec.shape,
                                                                                         strict=True)):
            raise InvalidInput(f"{where} has shape {tensor.shape}; the model takes {list(spec.shape)} (-1: any size)")
        if blob is not None:
            elements = _unpack_bytes(blob, where)
        elif tensor.data is not None:
            elements = _flatten(tensor.data, tensor.shape, where)
        else:
            raise InvalidInput(f"{where} has no data (neither `data` nor binary_data_size)")
        if len(elements) != math.prod(tensor.shape):
            raise InvalidInput(f"{where} has shape {tensor.shape} ({math.prod(tensor.shape)} elements) but its data "
                               f"holds {len(elements)}")
        found[tensor.name] = elements
    missing = [spec.name for spec in specs if spec.name not in found]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}: the model takes {takes}")
    return found


def _flatten(data: list[Any], shape: list[int], where: str) -> list[str]:
    """JSON data, flat or nested exactly as ``shape``: its strings in row-major order."""
    flat: list[Any] = []

    def walk(items: Any, depth: int) -> None:
        if depth == len(shape):
            flat.append(items)
        elif not isinstance(items, list) or len(items) != shape[depth]:
            raise InvalidInput(f"{where}: nested data does not have the shape {shape}")
        else:
            for item in items:
                walk(item, depth + 1)

    if any(isinstance(item, list) for item in data):
        walk(data, 0)
    else:
        flat = data
    for index, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidInput(f"{where}: element {index} is {type(item).__name__}, not a string (BYTES in JSON "
                               "are strings)")
    return flat


def _unpack_bytes(blob: bytes, where: str) -> list[str]:
    """BYTES elements of binary data: each a 4-byte little-endian length, then that many bytes of UTF-8."""
    elements: list[str] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidInput(f"{where}: binary data ends inside the length of element {len(elements)}")
        (size,) = struct.unpack_from("<I", blob, offset)
        if offset + 4 + size > len(blob):
            raise InvalidInput(f"{where}: element {len(elements)} has length {size} but only "
                               f"{len(blob) - offset - 4} bytes are left")
        try:
            elements.append(blob[offset + 4:offset + 4 + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: element {len(elements)} is not valid UTF-8") from None
        offset += 4 + size
    return elements


def wanted_outputs(request: InferenceRequest, specs: list[TensorSpec], classifiable: str | None) -> list[Wanted]:
    """The outputs to return, in the order asked (all when none is asked), each as binary data or JSON (its
    ``binary_data``, else the request's ``binary_data_output``, else JSON)."""
    default = (request.parameters or {}).get("binary_data_output", False)
    if not isinstance(default, bool):
        raise InvalidInput("parameter binary_data_output must be a boolean")
    if request.outputs is None:
        return [Wanted(spec.name, default) for spec in specs]
    wanted: list[Wanted] = []
    for output in request.outputs:
        where, parameters = f"output {output.name!r}", output.parameters or {}
        if output.name not in {spec.name for spec in specs}:
            raise InvalidInput(f"unknown {where}: the model has {', '.join(repr(s.name) for s in specs)}")
        if any(w.name == output.name for w in wanted):
            raise InvalidInput(f"{where} is asked for twice")
        if "shared_memory_region" in parameters:
            raise InvalidInput(f"{where}: shared memory is not supported")
        binary, top = parameters.get("binary_data", default), parameters.get("classification", 0)
        if not isinstance(binary, bool):
            raise InvalidInput(f"{where}: parameter binary_data must be a boolean")
        if isinstance(top, bool) or not isinstance(top, int) or top < 0:
            raise InvalidInput(f"{where}: classification must be a non-negative integer")
        if top and output.name != classifiable:
            raise InvalidInput(f"{where}: classification is served on {classifiable!r} only" if classifiable
                               else f"{where}: this model serves no classification")
        wanted.append(Wanted(output.name, binary, top))
    return wanted


def classify(probabilities: npt.NDArray[np.float32], labels: list[str], top: int, name: str) -> Tensor:
    """Triton's classification extension: the ``top`` highest probabilities of each row as BYTES
    ``"<value>:<index>:<label>"``, highest first (shape [N, top]; top is capped at the number of labels)."""
    top = min(top, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    data = [f"{probabilities[row, i]}:{i}:{labels[i]}" for row in range(len(order)) for i in order[row]]
    return Tensor(name, BYTES, [probabilities.shape[0], top], data)


def _pack(tensor: Tensor) -> bytes:
    if isinstance(tensor.data, np.ndarray):
        return tensor.data.astype("<f4").tobytes()
    return b"".join(struct.pack("<I", len(raw)) + raw for raw in (item.encode("utf-8") for item in tensor.data))


def infer_response(model_name: str, model_version: str, request_id: str | None, tensors: list[Tensor],
                   binary: dict[str, bool]) -> Response:
    """The inference response: plain JSON, or (when an output is binary) the JSON header, its length in
    ``Inference-Header-Content-Length``, then the binary outputs' bytes in output order."""
    outputs, blobs = [], []
    for tensor in tensors:
        output: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if binary.get(tensor.name):
            blobs.append(_pack(tensor))
            output["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            output["data"] = tensor.data.reshape(-1).tolist() if isinstance(tensor.data, np.ndarray) else tensor.data
        outputs.append(output)
    body = {"model_name": model_name, "model_version": model_version,
            **({"id": request_id} if request_id is not None else {}), "outputs": outputs}
    header = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(b"".join([header, *blobs]), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})
