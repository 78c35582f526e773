"""The attention viewer: a self-contained page and its script, shipped inside the package (no CDN)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

STATIC = files("app.static")


@router.get("/attention", response_class=HTMLResponse)
async def attention_viewer() -> HTMLResponse:
    return HTMLResponse(STATIC.joinpath("attention.html").read_text(encoding="utf-8"))


@router.get("/attention.js")
async def attention_script() -> Response:
    return Response(STATIC.joinpath("attention.js").read_text(encoding="utf-8"), media_type="text/javascript")
