"""schemathesis against the app's own OpenAPI, every operation, with a classifier, a text-generation and a
sentence-embedding model served: no request, valid or not, may end in a server error (5xx)."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def api_schema(tiny_artifact: Path, tiny_lm_artifact: Path, tiny_embedding_artifact: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    models = tmp_path_factory.mktemp("fuzz-models")
    for artifact in (tiny_artifact, tiny_lm_artifact, tiny_embedding_artifact):
        (models / artifact.name).symlink_to(artifact, target_is_directory=True)
    app = create_app(Settings(_env_file=None, models_dir=models, threads=1, admin_api_key="fuzz-admin"))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_errors(api_schema: schemathesis.BaseSchema, label: str) -> None:
    warmed_up(api_schema.app)
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def no_server_error(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=ADMIN, checks=[not_a_server_error])

    no_server_error()
