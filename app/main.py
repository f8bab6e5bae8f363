"""The app factory. `gunicorn -c python:app.gunicorn_conf 'app.main:create_app()'` serves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging.config
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import docs_page, errors, routes, v2
from app.drain import DrainState
from app.logs import logging_config
from app.metrics import Metrics
from app.middleware import RequestContextMiddleware
from app.model_store import ModelStore, configure_mlflow_client, warm_imports
from app.settings import Settings

log = logging.getLogger("beyondfit")

VERSION = "0.1.0"


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    """Builds the service. The model loads in the background once the app starts: /health
    answers at once, /health/ready turns 200 when a model serves."""
    settings = settings or Settings()
    logging.config.dictConfig(logging_config(settings.log_level))
    configure_mlflow_client()
    warm_imports(settings)
    metrics = store.metrics if store is not None else Metrics()
    store = store or ModelStore(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.start_worker()
        task = asyncio.create_task(store.run(), name="model-store")
        if store.replaces_a_worker():
            # Sibling workers serve meanwhile; this one accepts connections once it can answer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    store.first_load.wait(), settings.replacement_load_timeout_seconds
                )
        if store.current is None:
            store.accepting_without_model()
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastAPI(
        title="beyondfit model service",
        version=VERSION,
        description="Predictions from the model that the MLflow registry alias names, "
        "with Prometheus metrics and the Open Inference Protocol.",
        lifespan=lifespan,
        docs_url=None,  # docs_page serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.store = store
    app.state.draining = DrainState()
    errors.install(app)
    docs_page.install(app)
    app.include_router(routes.router)
    app.include_router(v2.router)
    if settings.enable_constant_endpoint:
        app.include_router(routes.bench_router)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        model_version=lambda: store.current.ref.version if store.current else None,
        access_log_enabled=settings.access_log,
        draining=app.state.draining,
    )

    def openapi() -> dict[str, Any]:
        """OpenAPI whose /predict body schema and example come from the served model."""
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        body: dict[str, Any] = {
            "type": "object",
            "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
        }
        example: dict[str, Any] | None = None
        model = store.current
        if model is not None:
            schema = model.schema.adapter.json_schema(ref_template="#/components/schemas/{model}")
            doc.setdefault("components", {}).setdefault("schemas", {}).update(
                schema.pop("$defs", {})
            )
            body = schema
            example = {"instances": model.input_example}
        content: dict[str, Any] = {"schema": body}
        if example is not None:
            content["example"] = example
        doc["paths"]["/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": content},
        }
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app
