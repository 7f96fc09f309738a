"""The API's documentation: Swagger UI served from a Python package (no CDN: the docs work on an
air-gapped network), and an OpenAPI document that tells the truth about authentication and errors.

- A Bearer security scheme; every route that needs a key says so, so "Try it out" sends it.
- Every route declares the error statuses it can answer with the one error body (`ErrorBody`,
  whose `code` lists every `ErrorCode`): 401/403 where a key is needed, 404 where the path names a
  resource, 409 where it changes state, 413/415 where it takes audio, 422 for bad input, and
  500/503 everywhere (an unexpected fault, a dependency outage or an overloaded inference pool).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from voiceid.api.errors import STATUS
from voiceid.errors import ErrorCode

SECURITY_SCHEME = "bearerAuth"
DOCS_STATIC = "/docs/static"
ERROR_SCHEMA = "ErrorBody"

# Why each status may come back, for the response descriptions.
STATUS_TEXT = {
    401: "No or unknown API key (UNAUTHENTICATED).",
    403: "The key's role may not do this (FORBIDDEN).",
    404: "The resource named in the path does not exist.",
    409: "The request conflicts with the resource's state.",
    413: "The body is larger than VOICEID_MAX_UPLOAD_BYTES, or the audio longer than allowed.",
    415: "The content type is not an accepted audio type.",
    422: "Invalid input: malformed parameters or body, unusable audio, or a missing consent.",
    500: "Unexpected fault (INTERNAL_ERROR); the request changed nothing it should not have.",
    503: "A dependency is down (database, model files) or the inference pool is full (OVERLOADED, see Retry-After).",
}


def swagger_assets() -> str:
    """The folder of the Swagger UI distribution inside the `swagger-ui-bundle-v2` package."""
    import swagger_ui_bundle

    return str(swagger_ui_bundle.swagger_ui_path)


def error_statuses(method: str, path: str, operation: dict[str, Any], secured: bool) -> set[int]:
    statuses = {422, 500, 503}
    if secured:
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if method in {"post", "put", "patch", "delete"}:
        statuses.add(409)
    content = operation.get("requestBody", {}).get("content", {})
    if any(kind.startswith("audio/") or kind == "application/octet-stream" for kind in content):
        statuses |= {413, 415}
    return statuses


def error_body_schema() -> dict[str, Any]:
    return {
        "title": ERROR_SCHEMA,
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {
                "type": "string",
                "enum": [c.value for c in ErrorCode],
                "description": "Stable error code; match on it, never on the message.",
            },
            "message": {"type": "string", "description": "For people; may change between versions."},
            "details": {"type": ["object", "null"], "additionalProperties": True},
        },
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA] = error_body_schema()
    codes_by_status: dict[int, list[str]] = {}
    for code, status in STATUS.items():
        codes_by_status.setdefault(status, []).append(code.value)
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            # `auth.require` declares the Bearer scheme, so FastAPI marks the routes that need a key.
            secured = any(SECURITY_SCHEME in requirement for requirement in operation.get("security", []))
            responses = operation.setdefault("responses", {})
            for status in sorted(error_statuses(method, path, operation, secured)):
                codes = ", ".join(sorted(codes_by_status.get(status, [])))
                responses[str(status)] = {
                    "description": STATUS_TEXT[status] + (f" Codes: {codes}." if codes else ""),
                    "content": {"application/json": {"schema": ref}},
                }
    # FastAPI's own validation schemas are replaced by the one error body.
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve /docs from the packaged Swagger UI and the corrected OpenAPI document. Call with an app
    created with `docs_url=None, redoc_url=None`."""
    app.mount(DOCS_STATIC, StaticFiles(directory=swagger_assets()), name="swagger-ui")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
