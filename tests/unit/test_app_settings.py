"""Settings: defaults, APP_ environment, .env, schema location, clear refusal of invalid values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings
from contract import SCHEMA_PATH


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = Settings()
    assert settings.models_dir == Path("models")
    assert (settings.runtime, settings.device, settings.torch_dtype) == ("onnx", "auto", "fp32")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.max_batch_texts, settings.max_text_chars) == (64, 100_000)
    assert settings.threads >= 1
    assert settings.schema_path == SCHEMA_PATH


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("APP_PORT=9001\nAPP_BACKEND=torch\n")
    monkeypatch.setenv("APP_BACKEND", "onnx")
    monkeypatch.setenv("APP_MAX_BATCH_TEXTS", "8")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.runtime == "onnx"  # the environment wins over .env
    assert settings.max_batch_texts == 8


@pytest.mark.parametrize(("name", "value"), [
    ("APP_RUNTIME", "tensorflow"), ("APP_DEVICE", "tpu"), ("APP_PORT", "0"), ("APP_PORT", "http"),
    ("APP_THREADS", "0"), ("APP_MAX_TEXT_CHARS", "-1"), ("APP_TORCH_DTYPE", "int8"),
])
def test_invalid_values_stop_with_clear_message(monkeypatch: pytest.MonkeyPatch, name: str,
                                                value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"invalid settings: {name}={value!r}"):
        load_settings()


def test_explicit_schema_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    schema = tmp_path / "my.schema"
    schema.write_text("{}")
    monkeypatch.setenv("APP_MANIFEST_SCHEMA", str(schema))
    assert load_settings().schema_path == schema


def test_models_that_land_later(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().models_poll_seconds, Settings().expected_models) == (0, [])
    monkeypatch.setenv("APP_EXPECTED_MODELS", " gpt2-quick, minilm-embed ,")
    monkeypatch.setenv("APP_MODELS_POLL_SECONDS", "0.5")
    settings = load_settings()
    assert (settings.expected_models, settings.models_poll_seconds) == (["gpt2-quick", "minilm-embed"], 0.5)


@pytest.mark.parametrize(("name", "value"), [
    ("APP_EXPECTED_MODELS", "ok,../elsewhere"), ("APP_EXPECTED_MODELS", ".tmp-gpt2-quick-1a2b3c4d"),
    ("APP_MODELS_POLL_SECONDS", "-1"),
])
def test_models_that_land_later_refuse(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"{name}="):
        load_settings()


def test_per_model_long_text_defaults_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().long_text_strategies == {}
    monkeypatch.setenv("APP_LONG_TEXT_STRATEGIES", '{"sentiment-minilm-student": "head+tail"}')
    assert load_settings().long_text_strategies == {"sentiment-minilm-student": "head+tail"}
    monkeypatch.setenv("APP_LONG_TEXT_STRATEGIES", '{"sentiment-minilm-student": "middle"}')
    with pytest.raises(SettingsError, match="APP_LONG_TEXT_STRATEGIES"):
        load_settings()
