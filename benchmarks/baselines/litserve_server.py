"""The LitServe baseline: the same HF classifier in torch behind LitServe with dynamic batching on.

    python benchmarks/baselines/litserve_server.py --model models/sentiment-minilm/hf --port 8002

One inference worker by default (`--workers`), `max_batch_size` 32 and a short `batch_timeout`: requests
arriving together are padded into one batch. `POST /v1/sentiment {"text": ...}`, `GET /health` (200 once the
worker is up).
No `from __future__ import annotations`: LitServe reads `decode_request`'s annotation as the body type.
"""

import argparse
from typing import Any

import litserve as ls
import torch
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class Body(BaseModel):
    text: str


class SentimentAPI(ls.LitAPI):
    def __init__(self, model: str, threads: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path, self.threads = model, threads

    def setup(self, device: str) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_path).to(device).eval()
        self.labels = self.model.config.id2label

    def decode_request(self, request: Body) -> str:
        return request.text

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            probs = self.model(**batch).logits.softmax(-1)
        scores, ids = probs.max(-1)
        return [(self.labels[int(i)], float(s)) for i, s in zip(ids, scores, strict=True)]

    def encode_response(self, output: tuple[str, float]) -> dict[str, Any]:
        return {"label": output[0], "score": output[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF folder of a sequence classifier")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes (workers_per_device)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds to wait for a fuller batch")
    args = parser.parse_args()
    api = SentimentAPI(args.model, args.threads, max_batch_size=args.max_batch_size,
                       batch_timeout=args.batch_timeout, api_path="/v1/sentiment")
    server = ls.LitServer(api, accelerator=args.device, devices=1, workers_per_device=args.workers)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
