"""Thin routes: validate, delegate to the model store and inference, shape the answer."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.errors import ApiError, validation_error
from app.inference import infer
from app.logs import request_id_var
from app.metrics import Metrics
from app.middleware import key_matches
from app.model_store import LoadedModel, ModelStore
from app.predictor import Prediction
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def current_model(
    request: Request, store: Annotated[ModelStore, Depends(get_store)]
) -> LoadedModel:
    model = store.current
    if model is None:
        raise ApiError(503, "no model is loaded yet; see /health/ready")
    # The X-Model-Version header names this model, the one the request uses, even if a swap
    # happens before the response starts (app/middleware.py reads it from here).
    request.state.model_version = model.ref.version
    return model


async def require_api_key(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> None:
    if settings.api_key and not key_matches(request.scope["headers"], settings.api_key):
        raise ApiError(401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)")


async def require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415, f"content type must be application/json, got {content_type or 'none'!r}"
        )


ModelDep = Annotated[LoadedModel, Depends(current_model)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
Protected = [Depends(require_api_key)]


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


router = APIRouter()


@router.get("/health", tags=["health"], summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", tags=["health"], summary="Readiness: a model is loaded and serving")
async def ready(request: Request, store: StoreDep) -> Response:
    if request.app.state.draining():
        return json_response({"status": "not ready", "reason": "draining before shutdown"}, 503)
    model = store.current
    if model is None or not store.all_workers_loaded():
        return json_response(
            {"status": "not ready", "reason": "a worker has no model loaded yet"}, 503
        )
    return json_response(
        {"status": "ready", "model_name": model.ref.name, "model_version": model.ref.version}
    )


@router.get("/metrics", tags=["health"], summary="Prometheus exposition of all workers")
async def metrics(m: MetricsDep) -> Response:
    body, content_type = m.exposition()
    return Response(body, media_type=content_type)


@router.get("/model", tags=["model"], summary="The model in service", dependencies=Protected)
async def model_info(model: ModelDep) -> dict[str, Any]:
    return {
        "name": model.ref.name,
        "version": model.ref.version,
        "alias": model.ref.alias,
        "run_id": model.ref.run_id,
        "loaded_at": model.loaded_at,
        "loader": model.loader,
        "signature": model.signature,
        "features": model.schema.names,
        "classes": model.predictor.classes,
        "input_example": model.input_example,
        "max_batch_size": model.schema.max_batch_size,
    }


@router.post(
    "/predict",
    tags=["model"],
    summary="Predict one or many rows",
    dependencies=[*Protected, Depends(require_json)],
    responses={
        400: {"description": "malformed JSON"},
        401: {"description": "API key required"},
        415: {"description": "not JSON"},
        422: {"description": "a field is wrong"},
        503: {"description": "no model loaded"},
    },
)
async def predict(request: Request, model: ModelDep, m: MetricsDep) -> Response:
    body = await request.body()
    try:
        rows = model.schema.parse(body)
    except ValidationError as e:
        raise validation_error(e) from None
    out = infer(model, model.schema.model_input(rows), m)
    return json_response(predict_body(model, out))


def predict_body(model: LoadedModel, out: Prediction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "predictions": out.labels.tolist(),
        "model_name": model.ref.name,
        "model_version": model.ref.version,
        "request_id": request_id_var.get(),
    }
    if out.probabilities is not None:
        body["classes"] = model.predictor.classes
        body["probabilities"] = out.probabilities.tolist()
    return body


bench_router = APIRouter()


@bench_router.post("/bench/constant", include_in_schema=False)
async def constant() -> Response:
    """The framework floor for the benchmark: same stack, no model. Mounted only when
    BEYONDFIT_ENABLE_CONSTANT_ENDPOINT is true."""
    return json_response({"predictions": [0]})
