"""The analysts' review desk at /review: server-rendered pages over the same services as the API
(the score log, the fraud desk), behind a signed-in `ReviewSession` (session.py).

    session.py  the signed cookie and the ReviewSession dependency (services/review_sessions.py)
    signin.py   sign in with an analyst or admin key, sign out
    layout.py   templates, and errors answered through the API's status table as pages in words
    forms.py    CSRF-checked POST fields and the attempts filter (the score log's one parser)
    pages.py    attempts and charts, one attempt, its voice cluster, the watchlist, the review queue
    export.py   the filtered attempts as spreadsheet-safe CSV
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from voiceid.api.review import export, pages, signin
from voiceid.api.review.layout import API_DIR

PREFIX = "/review"
router = APIRouter(include_in_schema=False)


@router.get(f"{PREFIX}/static/review.css")
async def stylesheet() -> FileResponse:
    return FileResponse(API_DIR / "static" / "review.css", media_type="text/css")


for part in (signin, export, pages):
    router.include_router(part.router, prefix=PREFIX)
