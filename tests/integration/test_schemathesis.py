"""schemathesis against the app's own OpenAPI, every operation, with a classifier, a text-generation and a
sentence-embedding model served: no request, valid or not, may end in a server error (5xx). Strings are drawn
from the whole code-point range, lone surrogates included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from app.main import create_app
from app.settings import Settings

ADMIN = {"Authorization": "Bearer fuzz-admin"}  # the admin key also opens the /v1 endpoints
OPERATIONS = [f"{method.upper()} {path}" for path, methods in create_app().openapi()["paths"].items()
              for method in methods]


def warmed_up(app: Any) -> None:
    """Start the app's lifespan if it is not running (schemathesis ends it after every test), wait for warm-up."""
    with asgi.get_client(app) as client:
        assert client.get("/health/live").status_code == 200
    deadline = time.monotonic() + 60
    while not (registry := app.state.service.registry).warmed:
        assert time.monotonic() < deadline, "warm-up did not finish"
        time.sleep(0.02)
    assert set(registry.statuses().values()) == {"ready"}


def _surrogated(value: Any) -> Any:
    """``value`` with a lone surrogate in the middle of every string (keys stay as they are)."""
    if isinstance(value, str):
        return value[:len(value) // 2] + "\ud800" + value[len(value) // 2:]
    if isinstance(value, list):
        return [_surrogated(item) for item in value]
    if isinstance(value, dict):
        return {key: _surrogated(item) for key, item in value.items()}
    return value


def with_lone_surrogates(case: schemathesis.Case) -> schemathesis.Case:
    """The case with lone surrogates in its JSON body's strings: schemathesis itself never draws them (they
    cannot be encoded as UTF-8), but JSON can carry them as escapes and pydantic accepts them."""
    if isinstance(case.body, dict | list):
        case.body = json.dumps(_surrogated(case.body)).encode()  # ASCII JSON with \ud800 escapes, sent as is
    return case


@pytest.fixture(scope="module")
def api_schema(tiny_artifact: Path, tiny_lm_artifact: Path, tiny_embedding_artifact: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    models = tmp_path_factory.mktemp("fuzz-models")
    for artifact in (tiny_artifact, tiny_lm_artifact, tiny_embedding_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    app = create_app(Settings(_env_file=None, models_dir=models, threads=1, admin_api_key="fuzz-admin"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.codec = None  # any code point, lone surrogates included (not only UTF-8-safe)
    yield schema
    asgi.shutdown_lifespans()


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_errors(api_schema: schemathesis.BaseSchema, label: str) -> None:
    warmed_up(api_schema.app)
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    cases = st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                      positive.map(with_lone_surrogates))

    @given(case=cases)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def no_server_error(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=ADMIN, checks=[not_a_server_error])

    no_server_error()
