"""The one `Settings` of the service: environment variables (prefix ``APP_``) and an optional ``.env``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "APP_"
REPO_SCHEMA = Path(__file__).resolve().parents[2] / "models" / "manifest.json.schema"
SCHEMA_NAME = "manifest.json.schema"


class SettingsError(RuntimeError):
    """Invalid configuration: the service refuses to start."""


class Settings(BaseSettings):
    """Service configuration. Every field is read from ``APP_<FIELD>`` (case-insensitive) or ``.env``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
                                      validate_default=True)

    models_dir: Path = Field(Path("models"), description="Folder holding one sub-folder per model artifact.")
    manifest_schema: Path | None = Field(
        None, description="JSON schema of manifest.json; unset = <repo>/models/manifest.json.schema, "
                          "else the copy next to the models dir.")
    backend: Literal["onnx", "torch"] = Field("onnx",
                                              description="Inference engine: ONNX Runtime or PyTorch.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when available, else cpu; an explicit cuda that is unavailable "
                            "stops the start.")
    torch_dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Weights/activations dtype of the torch backend; bf16/fp16 need device cuda.")
    threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1, le=256,
                         description="CPU threads per inference (torch intra-op / ORT intra_op_num_threads); "
                                     "default: the CPUs this process may use.")
    host: str = Field("127.0.0.1", min_length=1, description="Interface `python -m app` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `python -m app` listens on.")
    default_model: str | None = Field(
        None, description="Model used when a request names none; unset = first ready model by name.")
    max_batch_texts: int = Field(64, ge=1, le=4096, description="Most texts in one request.")
    max_text_chars: int = Field(2000, ge=1, le=1_000_000,
                                description="Most characters per text (longer texts are rejected with 422).")
    max_attention_tokens: int = Field(
        64, ge=2, le=512, description="Most tokens (special tokens included) of a text sent to /v1/attention; "
                                      "longer texts are rejected with 422 (payloads grow as layers*heads*tokens^2).")
    max_new_tokens: int = Field(256, ge=1, le=32_768,
                                description="Most tokens one /v1/generate or /v1/completions request may ask for.")
    max_concurrency: int = Field(1, ge=1, le=64, description="Inferences run at the same time (thread pool).")
    max_queue: int = Field(64, ge=0, le=10_000,
                           description="Requests allowed to wait for an inference slot; beyond it: 429.")
    request_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Longest a request may wait and run for inference; beyond it: 504 "
                                         "(a stream ends with finish_reason 'timeout').")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @property
    def schema_path(self) -> Path:
        """The manifest schema: the configured file, the repo copy, or the copy next to the models dir."""
        if self.manifest_schema is not None:
            return self.manifest_schema
        if REPO_SCHEMA.is_file():
            return REPO_SCHEMA
        return self.models_dir / SCHEMA_NAME

    @model_validator(mode="after")
    def _schema_exists(self) -> Settings:
        if not self.schema_path.is_file():
            raise ValueError(f"manifest schema not found at {self.schema_path} "
                             f"(set {ENV_PREFIX}MANIFEST_SCHEMA)")
        return self


def load_settings() -> Settings:
    """Read the settings; any invalid value becomes one `SettingsError` naming the variables at fault."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(err["loc"], err.get("input"), err["msg"]) for err in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None
    return settings


def _describe(loc: tuple[int | str, ...], value: object, message: str) -> str:
    if not loc:
        return message
    return f"{ENV_PREFIX}{'_'.join(str(part) for part in loc).upper()}={value!r}: {message}"
