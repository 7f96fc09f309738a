"""What the desk's forms send: POST fields checked against the session's CSRF token, and the
attempts filter, parsed by the score log's one filter parser (the API's /v1/verifications uses
it too) with errors named by the form's own labels."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from voiceid.api.review.session import SignedIn
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.score_log import given_filters, parse_filter
from voiceid.storage.repositories import VerificationFilter

# The attempts form's fields, as the page labels them (a filter error names the field by its label).
FILTER_LABELS = {
    "speaker_id": "Speaker",
    "decision": "Decision",
    "reason": "Reason",
    "cm": "Spoof check",
    "since": "From",
    "until": "To",
    "min_decided": "Score \u2265",
    "max_decided": "Score \u2264",
    "min_score": "Normalised score \u2265",
    "max_score": "Normalised score \u2264",
    "cm_flagged": "Spoof check",
    "adaptation": "Adaptation",
    "adapted": "Adaptation",
}
# Filters the form has no input for (a link from elsewhere may carry them): kept as hidden fields.
HIDDEN_FILTERS = ("min_score", "max_score", "cm_flagged", "adapted")


async def form_fields(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def same_token(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


async def signed_form(request: Request, session: SignedIn) -> dict[str, str]:
    """The dependency of every signed-in POST: its fields, once their CSRF token is the session's."""
    form = await form_fields(request)
    if not same_token(form.get("csrf", ""), session.csrf):
        raise VoiceIdError(ErrorCode.FORBIDDEN, "Invalid form token; reload the page and try again.")
    return form


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


def attempt_filter(params: dict[str, str]) -> tuple[dict[str, str], VerificationFilter | None, str | None]:
    """(the values to echo into the form, the filter or None, the error in words or None)."""
    values = given_filters(params)
    try:
        return values, parse_filter(params, FILTER_LABELS), None
    except VoiceIdError as exc:
        return values, None, exc.message
