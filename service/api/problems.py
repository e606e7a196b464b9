"""RFC 9457 problem details for every error the API returns, and the one place errors become HTTP.

:class:`service.errors.ItmError` subclasses map through :func:`service.errors.http_status`; API-only
conditions (auth, not found, conflict, payload too large) use :class:`ApiError` defined here because only the
API knows about them.
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ItmError, OverloadedError, http_status

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error that exists only at the HTTP layer (auth, missing resource, conflict, upload too large)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class NotFoundError(ApiError):
    """The addressed resource does not exist (or expired)."""

    def __init__(self, detail: str) -> None:
        super().__init__(HTTPStatus.NOT_FOUND, detail)


class ConflictError(ApiError):
    """The resource is not in a state that allows the request (e.g. a result before the job succeeded)."""

    def __init__(self, detail: str) -> None:
        super().__init__(HTTPStatus.CONFLICT, detail)


class PayloadTooLargeError(ApiError):
    """The upload exceeds the configured limit; raised while streaming, before the whole body is read."""

    def __init__(self, detail: str) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, detail)


class UnauthorizedError(ApiError):
    """Missing or wrong bearer token."""

    def __init__(self, detail: str) -> None:
        super().__init__(HTTPStatus.UNAUTHORIZED, detail, {"WWW-Authenticate": 'Bearer realm="itmstream"'})


def problem_response(
    status: int,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An ``application/problem+json`` response (RFC 9457 clause 3) with ``about:blank`` type."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1), as RFC 9110 clause 10.2.3 requires."""
    return {"Retry-After": str(max(1, round(seconds)))}


async def _itm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ItmError)
    status = http_status(exc)
    headers = retry_after_header(exc.retry_after_s) if isinstance(exc, OverloadedError) else None
    if isinstance(exc, OverloadedError):
        log.info("shed load on %s: %s", request.url.path, exc)  # by design under overload, not a fault
    elif status >= 500:
        log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
    return problem_response(status, str(exc), request, headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status, exc.detail, request, exc.headers or None)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, str(exc.detail), request, dict(exc.headers or {}) or None)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return problem_response(HTTPStatus.UNPROCESSABLE_ENTITY, detail, request, errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error", request)


_SCHEMA_REF = "#/components/schemas/{model}"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make an OpenAPI document say what the handlers above really send for errors (in place).

    FastAPI documents error responses as ``application/json`` (its 422 even with its own
    ``HTTPValidationError`` body), but every error here is ``application/problem+json`` with a
    :class:`service.api.schemas.Problem` body; any operation can fail with 500, and any that takes a body
    with 400. Schema-driven clients and fuzzers (schemathesis' content-type and schema conformance checks)
    trust the document, so it must match.
    """
    from service.api.schemas import Problem

    problem = Problem.model_json_schema(ref_template=_SCHEMA_REF)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMA_REF.format(model="Problem")}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:  # e.g. multipart/form-data without a boundary
                responses.setdefault("400", {"description": HTTPStatus.BAD_REQUEST.phrase})
            responses.setdefault("500", {"description": HTTPStatus.INTERNAL_SERVER_ERROR.phrase})
            for code, response in responses.items():
                if code == "default" or int(code) >= 400:
                    response["content"] = dict(content)
    if not any(_SCHEMA_REF.format(model=name) in str(schema["paths"]) for name in _FASTAPI_VALIDATION):
        for name in _FASTAPI_VALIDATION:
            components.pop(name, None)
    return schema


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem details."""
    app.add_exception_handler(ItmError, _itm_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
