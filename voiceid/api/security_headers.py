"""Browser hardening headers for the HTML pages (the review desk) and nosniff everywhere.

The review page is server-rendered with no script and one same-origin stylesheet, so its Content
Security Policy can forbid everything else: an injected tag can neither run script nor load or
send anything, and no other site may frame the page (clickjacking of approve/remove buttons)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

REVIEW_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": REVIEW_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path.startswith("/review") or request.url.path == "/":
            for name, value in HTML_HEADERS.items():
                response.headers.setdefault(name, value)
        return response
