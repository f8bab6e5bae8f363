"""Every error leaves as JSON that names the problem: never a stack trace, never HTML."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from app.logs import request_id_var
from app.schema import describe_errors

log = logging.getLogger("beyondfit.errors")
#: What a 500 says: the details are in the log line with the same request id.
INTERNAL_ERROR = "internal error; the request id identifies it in the logs"


class ApiError(Exception):
    """An error with a status and a message meant for the client."""

    def __init__(
        self, status: int, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def error_response(
    status: int,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    body["request_id"] = request_id_var.get()
    return Response(
        json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def validation_error(error: ValidationError) -> ApiError:
    """pydantic's ValidationError as a 400 (unparseable JSON) or 422 (wrong content)."""
    details = describe_errors(error)
    if any(d["type"] == "json_invalid" for d in details):
        return ApiError(400, f"malformed JSON: {details[0]['message']}", details)
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(422, f"{first['field']}: {first['message']}{more}", details)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> Response:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        status = 400 if any(d["type"] == "json_invalid" for d in details) else 422
        message = (
            f"{details[0]['field']}: {details[0]['message']}" if details else "invalid request"
        )
        return error_response(status, message, details)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> Response:
        return error_response(
            exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, INTERNAL_ERROR)
