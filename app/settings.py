"""The one `Settings` of the service: environment variables (prefix ``APP_``) and an optional ``.env``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract import SCHEMA_PATH

ENV_PREFIX = "APP_"
LongTextStrategy = Literal["truncate", "head+tail", "chunks"]
"""How a classifier reads a text longer than its max_length tokens (`app.tasks.classification.long_text`)."""


class SettingsError(RuntimeError):
    """Invalid configuration: the service refuses to start."""


class Settings(BaseSettings):
    """Service configuration. Every field is read from ``APP_<FIELD>`` (case-insensitive) or ``.env``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True,
                                      validate_default=True)

    models_dir: Path = Field(Path("models"), description="Folder holding one sub-folder per model artifact.")
    manifest_schema: Path = Field(SCHEMA_PATH, description="JSON schema of manifest.json; default: the one the "
                                                            "contract package ships.")
    runtime: Literal["onnx", "torch"] = Field(
        "onnx", validation_alias=AliasChoices("APP_RUNTIME", "APP_BACKEND"),
        description="How models run: ONNX Runtime or PyTorch (APP_RUNTIME; APP_BACKEND is still read).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when available, else cpu; an explicit cuda that is unavailable "
                            "stops the start.")
    torch_dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Weights/activations dtype of the torch runtime: bf16 on cuda or on a CPU with "
                            "avx512_bf16 or AMX (anywhere else the start fails), fp16 on cuda.")
    threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1, le=256,
                         description="CPU threads per inference (torch intra-op / ORT intra_op_num_threads); "
                                     "default: the CPUs this process may use.")
    host: str = Field("127.0.0.1", min_length=1, description="Interface `python -m app` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `python -m app` listens on.")
    default_model: str | None = Field(
        None, description="Model used when a request names none; unset = first ready model by name.")
    max_batch_texts: int = Field(64, ge=1, le=4096, description="Most texts in one request.")
    max_text_chars: int = Field(100_000, ge=1, le=1_000_000,
                                description="Most characters per text (longer texts are rejected with 422); "
                                            "max_body_bytes bounds the texts of a request together.")
    max_text_tokens: int = Field(16_384, ge=1, le=1_000_000,
                                 description="Most tokens (special tokens excluded) per text to classify, whatever "
                                             "the long-text strategy; longer texts are rejected with 422.")
    max_request_windows: int = Field(
        512, ge=1, le=100_000, description="Most windows (model rows of at most max_length tokens) the texts of one "
                                           "classification request make together; beyond it: 422.")
    long_text_strategy: LongTextStrategy = Field(
        "chunks", description="How classifiers read a text longer than their max_length tokens when a request does "
                              "not say (long_text): truncate = its first tokens; head+tail = its first and last "
                              "tokens (1/4 and 3/4 of the window); chunks = overlapping windows over all of it, their "
                              "logits averaged, weighted by window length.")
    long_text_strategies: dict[str, LongTextStrategy] = Field(
        default_factory=dict, description="Per-model defaults that replace long_text_strategy for the models "
                                          "named, as JSON: {\"sentiment-minilm-student\": \"head+tail\"}.")
    max_attention_tokens: int = Field(
        64, ge=2, le=512, description="Most tokens (special tokens included) of a text sent to /v1/attention; "
                                      "longer texts are rejected with 422 (payloads grow as layers*heads*tokens^2).")
    max_new_tokens: int = Field(256, ge=1, le=32_768,
                                description="Most tokens one /v1/generate or /v1/completions request may ask for.")
    max_concurrency: int = Field(
        default_factory=lambda: min(2, len(os.sched_getaffinity(0))), ge=1, le=64,
        description="Inferences run at the same time (classification rounds, attention); default 2 (1 on one "
                    "CPU): two single-threaded rounds beat one two-threaded round on small models.")
    max_queue: int = Field(64, ge=0, le=10_000,
                           description="Requests allowed to wait for an inference slot; beyond it: 429.")
    request_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Longest a request may wait and run for inference; beyond it: 504 "
                                         "(a stream ends with finish_reason 'timeout').")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    # dynamic batching and ONNX Runtime variants; cores: threads * max_concurrency <= CPUs
    max_batch_size: int = Field(32, ge=1, le=1024,
                                description="Most texts per classification model call (concurrent requests are "
                                            "batched up to it; a request with more texts is split).")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000,
                                 description="Longest a classification request waits for others to join its batch "
                                             "while the model is idle (0 = batch only what already waits).")
    onnx_variant: Literal["fp32", "int8"] = Field(
        "fp32", description="ONNX graph served under a model's own name (int8 = model.int8.onnx where the "
                            "artifact has it: classifiers and decoders); an int8 graph is also served as <name>-int8.")
    serve_variants: bool = Field(
        True, description="Also serve each model's other ONNX graphs as <name>-<variant> (e.g. <name>-int8); "
                          "false = load only the APP_ONNX_VARIANT graph, and none of the others' memory is spent.")

    # security, limits and observability: API keys, CORS, body size, /metrics, log format
    api_keys: SecretStr = Field(SecretStr(""), description="Comma-separated API keys for /v1/*; none here or in "
                                                           "api_keys_file = no authentication.")
    api_keys_file: Path | None = Field(None, description="File with more API keys, one per line ('#' comments).")
    admin_api_key: SecretStr = Field(SecretStr(""), description="Admin key(s), comma-separated; none here or in "
                                                                "admin_api_keys_file = admin endpoints closed.")
    admin_api_keys_file: Path | None = Field(None, description="File with more admin keys, one per line.")
    docs_public: bool = Field(True, description="false = /docs, /redoc and /openapi.json need an API key.")
    metrics_public: bool = Field(True, description="false = GET /metrics needs an API key.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS (e.g. https://a.example) or *; "
                                          "empty = no CORS headers at all.")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30,
                                description="Largest request body in bytes; beyond it: 413.")
    log_format: Literal["text", "json"] = Field("text", description="text, or json: one JSON object per line.")
    # lifecycle: graceful shutdown of `python -m app`
    shutdown_timeout_s: int = Field(
        25, ge=1, le=3600, description="On SIGTERM/SIGINT: stop accepting, then wait at most this long for "
                                       "requests in flight before cancelling them; keep it below the "
                                       "orchestrator's grace period.")
    # continuous batching of text generation; its queue is max_queue, its time limit request_timeout_s
    max_batch_sequences: int = Field(
        8, ge=1, le=64, description="Generations one model decodes together, one token each per step; more wait "
                                    "(up to max_queue per model, then 429).")
    max_prefill_tokens: int = Field(
        128, ge=1, le=1_000_000,
        description="Most tokens one prefill call of a generator reads (prompts times the longest of them, padding "
                    "included): prompts that arrive while the model is busy are read shortest first, those of "
                    "similar length together in one left-padded call up to it; a longer prompt is read alone. "
                    "On a CPU a prefill is compute-bound and larger calls delay the first tokens; on a GPU, where "
                    "one call costs about the same for 1 or 8 prompts, raise it (e.g. 4096).")
    # models that land while the service runs (`make run` serves the first one and builds the others meanwhile)
    models_poll_seconds: float = Field(
        0.0, ge=0, le=86_400, description="Every this many seconds, look for artifact folders that appeared in "
                                          "models_dir and load, warm and serve each one; 0 = never (an admin "
                                          "reload still adds them).")
    expected_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated model names (folders of models_dir) still being built: "
                                          "listed with status 'building' until they land.")

    @property
    def schema_path(self) -> Path:
        return self.manifest_schema

    @model_validator(mode="after")
    def _schema_exists(self) -> Settings:
        if not self.schema_path.is_file():
            raise ValueError(f"manifest schema not found at {self.schema_path} "
                             f"(set {ENV_PREFIX}MANIFEST_SCHEMA)")
        return self

    @model_validator(mode="after")
    def _threads_per_inference(self) -> Settings:
        """APP_THREADS unset: the CPUs divided among APP_MAX_CONCURRENCY inferences (never oversubscribed)."""
        if "threads" not in self.model_fields_set:
            self.threads = max(1, len(os.sched_getaffinity(0)) // self.max_concurrency)
        return self

    def user_keys(self) -> tuple[str, ...]:
        """The API keys of /v1/* (the setting and the file's lines)."""
        return _keys(self.api_keys, self.api_keys_file)

    def admin_keys(self) -> tuple[str, ...]:
        """The keys of admin endpoints."""
        return _keys(self.admin_api_key, self.admin_api_keys_file)

    @field_validator("cors_origins", "expected_models", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("expected_models")
    @classmethod
    def _expected_are_folder_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if n.startswith(".") or "/" in n or "\\" in n]
        if bad:
            raise ValueError(f"not a folder name of the models dir: {bad}")
        return names

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        bad = [o for o in origins if o != "*" and not re.fullmatch(r"https?://[^/\s]+", o)]
        if bad:
            raise ValueError(f"not an origin (scheme://host[:port], no path): {bad}")
        return origins

    @model_validator(mode="after")
    def _key_files_hold_keys(self) -> Settings:
        for name, path in (("API_KEYS_FILE", self.api_keys_file), ("ADMIN_API_KEYS_FILE", self.admin_api_keys_file)):
            if path is None:
                continue
            try:
                found = _keys(SecretStr(""), path)
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{ENV_PREFIX}{name}={str(path)!r} cannot be read: {exc}") from None
            if not found:
                raise ValueError(f"{ENV_PREFIX}{name}={str(path)!r} holds no key")
        return self


def _keys(listed: SecretStr, file: Path | None) -> tuple[str, ...]:
    keys = [key.strip() for key in listed.get_secret_value().split(",")]
    if file is not None:
        keys += [line.strip() for line in file.read_text(encoding="utf-8").splitlines()
                 if not line.strip().startswith("#")]
    return tuple(key for key in keys if key)


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
    name = "_".join(str(part) for part in loc).upper()
    return f"{name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name}={value!r}: {message}"
