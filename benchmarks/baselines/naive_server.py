"""The naive baseline: FastAPI with a sync endpoint calling a transformers `pipeline` once per request.

    python benchmarks/baselines/naive_server.py --model models/sentiment-minilm/hf --port 8001

What a first version usually looks like: one uvicorn worker, the pipeline built at start-up and called for
every request from FastAPI's thread pool, no batching. `POST /v1/sentiment {"text": ...}`, `GET /health`.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline


class Body(BaseModel):
    text: str


def create_app(model: str, device: str) -> FastAPI:
    classifier = pipeline("text-classification", model=model, device=device)
    app = FastAPI()

    @app.post("/v1/sentiment")
    def sentiment(body: Body) -> dict[str, Any]:
        result = classifier(body.text, truncation=True)[0]
        return {"label": result["label"], "score": float(result["score"])}

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF folder of a sequence classifier")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.model, args.device), host="127.0.0.1", port=args.port, workers=1,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
