"""Pure ASGI middleware: request id, request metrics by route template, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import INTERNAL_ERROR, error_response
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


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        model_version: Callable[[], str | None],
        access_log_enabled: bool,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
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
                version = self.model_version()
                if version is not None:
                    headers.append((b"x-model-version", version.encode()))
                if self.draining():  # see app/drain.py: clients move to other pods
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
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
                method = scope["method"]
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
