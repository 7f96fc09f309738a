"""The OpenAPI document tells the truth: a Bearer scheme on every route that needs a key, every error
status declared with the one error body, complete enums; /docs is served from the package."""

from __future__ import annotations

import re

from voiceid.errors import ErrorCode
from voiceid.statuses import SpeakerStatus
from voiceid.verify.decision import Decision, Reason

ERROR_REF = "#/components/schemas/ErrorBody"


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_every_route_declares_its_errors_and_the_security_scheme(make_api):
    api = make_api()
    schema = api.client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert len(list(operations(schema))) >= 20  # the included routers are documented too
    for path, method, op in operations(schema):
        responses = op["responses"]
        errors = {int(s) for s in responses if int(s) >= 400}
        assert {422, 500, 503} <= errors, (path, method)
        if "{" in path:
            assert 404 in errors, (path, method)
        for status in errors:
            assert responses[str(status)]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
        # A route that answers 401 to a request without a key declares it and the Bearer scheme.
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        r = api.client.request(method.upper(), concrete)
        if r.status_code == 401:
            assert op.get("security") == [{"bearerAuth": []}], (path, method)
            assert {401, 403} <= errors
        if r.status_code >= 400:
            assert r.status_code in errors, (path, method, r.status_code)
            assert set(r.json()) >= {"code", "message"}


def test_enums_are_complete(make_api):
    api = make_api()
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["ErrorBody"]["properties"]["code"]["enum"]) == {c.value for c in ErrorCode}
    assert set(schemas["SpeakerStatus"]["enum"]) == {s.value for s in SpeakerStatus}
    assert "REVIEW_REQUIRED" in schemas["SpeakerStatus"]["enum"]
    assert set(schemas["Decision"]["enum"]) == {d.value for d in Decision}
    assert set(schemas["Reason"]["enum"]) == {r.value for r in Reason}


def test_docs_page_uses_only_packaged_assets(make_api):
    api = make_api()
    page = api.client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "cdn" not in page.text.lower()
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        r = api.client.get(asset)
        assert r.status_code == 200 and len(r.content) > 10_000, asset
