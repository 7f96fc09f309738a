"""How every desk page is answered: server-rendered templates in one layout, and errors through the
API's one status table (api/errors.py: the HTTP status of each ErrorCode), shown as a page in words
instead of the JSON body the API sends. No JavaScript framework and no CDN: the desk must work on
an air-gapped fraud desk."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from voiceid.api.errors import status_for
from voiceid.api.review.session import SESSION_STATE, ReviewSession, SignInRequired
from voiceid.errors import VoiceIdError

API_DIR = Path(__file__).resolve().parents[1]
templates = Jinja2Templates(directory=str(API_DIR / "templates"))
LOGIN_PATH = "/review/login"


def to_login() -> RedirectResponse:
    return RedirectResponse(LOGIN_PATH, status_code=303)


def render(
    request: Request, name: str, session: ReviewSession | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": session, **context}, status_code=status_code)


def error_page(request: Request, exc: VoiceIdError) -> HTMLResponse:
    """The desk's error page for `exc`, inside the signed-in layout when there is a session."""
    session: ReviewSession | None = getattr(request.state, SESSION_STATE, None)
    return render(request, "error.html", session, status_for(exc.code), message=exc.message)


class ReviewRoute(APIRoute):
    """A desk route: no session means the sign-in page; a VoiceIdError, from the route or its
    dependencies, is the error page with the status the API's table gives its code."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return to_login()
            except VoiceIdError as exc:
                return error_page(request, exc)

        return answer


def desk_router() -> APIRouter:
    return APIRouter(route_class=ReviewRoute)
