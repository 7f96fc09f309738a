"""`GET /`: where a newcomer lands. No authentication and nothing secret: the service's name and
links to the API documentation, the analysts' review desk and the readiness probe; an HTML page for
a browser, JSON for a client that asks for it (or for no type in particular, as curl does)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

router = APIRouter()

LINKS = (
    ("docs", "/docs", "API documentation (OpenAPI, Swagger UI)"),
    ("review", "/review", "Review desk for fraud analysts (sign in with an analyst or admin API key)"),
    ("readyz", "/readyz", "Readiness: model loaded, database reachable, limits not reached"),
)
PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>voiceid</title></head>\n'
    "<body><h1>voiceid</h1><p>Voice ID for telephone IVRs.</p><ul>\n"
    + "".join(f'<li><a href="{path}" id="{name}">{path}</a>: {text}</li>\n' for name, path, text in LINKS)
    + "</ul></body></html>\n"
)


def _quality(accept: str, media_type: str) -> float:
    """The q-value `accept` gives `media_type` exactly (0 when it is not named)."""
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if kind.lower() == media_type:
            for param in params:
                name, _, value = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        return float(value)
                    except ValueError:
                        return 0.0
            return 1.0
    return 0.0


def wants_html(accept: str | None) -> bool:
    """A browser's Accept names text/html above application/json; an API client names JSON, or nothing."""
    accept = accept or ""
    return _quality(accept, "text/html") > _quality(accept, "application/json")


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    if wants_html(request.headers.get("accept")):
        return HTMLResponse(PAGE)
    return JSONResponse(
        {"service": "voiceid", "links": {name: {"href": path, "title": text} for name, path, text in LINKS}}
    )
