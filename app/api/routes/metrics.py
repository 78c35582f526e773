"""GET /metrics: the Prometheus text exposition of the default registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, generate_latest

from app.api.security import AUTH_ERRORS, require_metrics_access

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_metrics_access)],
            responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format."},
                       **AUTH_ERRORS}, summary="Prometheus metrics")
async def metrics() -> Response:
    """Requests by route template, method and status; latency histograms; queue depth; batch sizes; tokens
    generated; model status. Needs an API key when `APP_METRICS_PUBLIC=false`."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_PLAIN_0_0_4)
