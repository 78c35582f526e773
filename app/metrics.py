"""Prometheus metrics of the service (``GET /metrics``): one module-level set, recorded from every layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter("app_requests_total", "HTTP requests by route template, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("app_request_duration_seconds", "HTTP request latency by route template.", ["route"],
                    buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("app_requests_in_flight", "HTTP requests being served (received, not yet answered), by route "
                  "template.", ["route"])
QUEUE_DEPTH = Gauge("app_queue_depth", "Work waiting for a model call, by model and admission loop (batch: texts; "
                    "stream: generations; single: requests).", ["model", "loop"])
QUEUE_WAIT = Histogram("app_queue_wait_seconds", "Time from a request's arrival at its admission loop to the start "
                       "of its first model call, by model and loop.", ["model", "loop"], buckets=LATENCY_BUCKETS)
GENERATION_STREAMS = Gauge("app_generation_streams_active", "Generations being decoded (rows of the batch), by "
                           "model.", ["model"])
BATCH_SIZE = Histogram("app_batch_size", "Items per model call, by model.", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
PREFILL_BATCH_SIZE = Histogram("app_prefill_batch_size", "Prompts read in one prefill call of a generation model, "
                               "by model.", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64))
TOKENS_GENERATED = Counter("app_generated_tokens_total", "Tokens generated, by model.", ["model"])
MODEL_STATUS = Gauge("app_model_status", "1 for the status a model is in, 0 for the others.", ["model", "status"])
