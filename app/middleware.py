"""Pure ASGI middleware: request id, request metrics by route template, access log, and the
limits every request meets before any route parses it: body size (413), body deadline (408),
and the API key on the documentation routes."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import INTERNAL_ERROR, ApiError, error_response
from app.logs import request_id_var
from app.metrics import Metrics

access_log = logging.getLogger("beyondfit.access")
error_log = logging.getLogger("beyondfit.errors")

# Probes and scrapes are left out of the request metrics and the access log.
UNMEASURED = frozenset(
    {"/health", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready"}
)
# Documentation routes are plain Starlette routes, which do not name their template.
DOCS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
#: The methods a metric label names; any other token a client invents (the HTTP parser
#: accepts any) is counted as "other", so clients cannot add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def key_matches(headers: Iterable[tuple[bytes, bytes]], api_key: str) -> bool:
    """Whether the request carries the API key (X-API-Key, or Authorization: Bearer)."""
    given: bytes | None = None
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-api-key":
            given = value
        elif name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    given = given if given is not None else bearer
    return given is not None and secrets.compare_digest(given, api_key.encode())


def is_docs(path: str) -> bool:
    return path in DOCS or path.startswith("/docs/")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        model_version: Callable[[], str | None],
        access_log_enabled: bool,
        draining: Callable[[], bool] = lambda: False,
        max_body_bytes: int = 1 << 20,
        body_timeout: float = 30.0,
        api_key: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.app = app
        self.metrics_port = metrics_port
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.api_key = api_key
        self.draining = draining
        self.metrics = metrics
        self.model_version = model_version
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        )
        token = request_id_var.set(request_id)
        status = 500
        started = False
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                version = (scope.get("state") or {}).get("model_version") or self.model_version()
                if version is not None:
                    headers.append((b"x-model-version", version.encode()))
                if self.draining() or status in (408, 413):
                    # draining: see app/drain.py, clients move to other pods; 408/413: the
                    # rest of the body is never read, so the connection cannot be reused
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
            else:
                await self.app(scope, self._limited(receive), send_with_headers)
        except Exception:
            # Answered here rather than by Starlette's outermost error handler, so that the
            # 500 and its log line carry the request id and the model version.
            if started:
                raise
            error_log.exception("unhandled error", extra={"path": scope["path"]})
            response = error_response(500, INTERNAL_ERROR)
            await response(scope, receive, send_with_headers)
        finally:
            path = scope["path"]
            if path not in UNMEASURED:
                elapsed = time.perf_counter() - start
                route = scope.get("route")
                template = getattr(route, "path", None) or (path if path in DOCS else "unmatched")
                method = method_label(scope["method"])
                self.metrics.http_requests.labels(method, template, str(status)).inc()
                self.metrics.http_duration.labels(method, template).observe(elapsed)
                if self.access_log_enabled:
                    access_log.info(
                        "request",
                        extra={
                            "method": method,
                            "path": path,
                            "route": template,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                        },
                    )
            request_id_var.reset(token)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request refused before the app sees it, or None."""
        if self.metrics_port is not None:
            server = scope.get("server") or (None, None)
            if (server[1] == self.metrics_port) != (scope["path"] == "/metrics"):
                return error_response(404, "Not Found")
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            return error_response(
                413, f"request body of {length} bytes is over the limit of {self.max_body_bytes}"
            )
        if (
            self.api_key
            and is_docs(scope["path"])
            and not key_matches(scope["headers"], self.api_key)
        ):
            return error_response(
                401,
                "missing or wrong API key (send X-API-Key or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that cuts a body over the size limit (413) and one that does not arrive
        within the body deadline (408). Once the body is in, messages pass through."""
        limit, timeout = self.max_body_bytes, self.body_timeout
        received = 0
        done = False
        deadline: float | None = None

        async def limited() -> Message:
            nonlocal received, done, deadline
            if done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + timeout
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise ApiError(
                    408, f"the request body did not arrive within {timeout:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(413, f"request body is over the limit of {limit} bytes")
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return limited
