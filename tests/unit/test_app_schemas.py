"""Request/response schemas: structure, blank texts, exactly one of text/texts, examples in OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.api.schemas.requests import SentimentRequest
from app.api.schemas.responses import ErrorResponse, ModelsResponse, SentimentResponse


def test_single_and_batch() -> None:
    assert SentimentRequest(text="good").items() == ["good"]
    request = SentimentRequest.model_validate({"texts": ["a", "b"], "model": "m"})
    assert request.items() == ["a", "b"]
    assert request.model == "m"


@pytest.mark.parametrize("body", [
    {}, {"text": ""}, {"text": " \n\t"}, {"texts": []}, {"texts": ["ok", "  "]}, {"text": 3},
    {"texts": "not a list"}, {"texts": [1, 2]}, {"text": "a", "texts": ["b"]}, {"txt": "typo"},
    {"text": "a", "model": 5},
])
def test_invalid_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SentimentRequest.model_validate(body)


@pytest.mark.parametrize("model", [SentimentRequest, SentimentResponse, ModelsResponse, ErrorResponse])
def test_schemas_carry_valid_examples(model: Any) -> None:
    examples = model.model_json_schema()["examples"]
    assert examples
    for example in examples:
        model.model_validate(example)
