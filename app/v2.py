"""Open Inference Protocol (KServe / Seldon V2) REST endpoints, so their clients work unchanged.

Two input layouts are accepted: one tensor per feature (named like the signature's columns,
shape [N] or [N, 1]) or one tensor of shape [N, F] with columns in signature order.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any, Literal, get_args

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import ApiError
from app.inference import infer
from app.model_store import LoadedModel, ModelStore
from app.routes import MetricsDep, Protected, StoreDep, current_model, json_response, require_json
from app.schema import ModelInput, describe_errors

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
_NUMERIC = set(get_args(Datatype)) - {"BYTES"}
_FLOAT_MAX = sys.float_info.max
_INTEGERS = frozenset(d for d in _NUMERIC if d.startswith(("INT", "UINT")))
#: The tensor datatypes a numeric column takes: the same kinds /predict accepts (an integer
#: for a floating column, never a boolean for a number or a float for an integer).
_ACCEPTED: dict[str, frozenset[str]] = {
    "double": frozenset({"FP16", "FP32", "FP64"}) | _INTEGERS,
    "float": frozenset({"FP16", "FP32", "FP64"}) | _INTEGERS,
    "long": _INTEGERS,
    "integer": _INTEGERS,
    "boolean": frozenset({"BOOL"}),
}
_SIGNATURE_DATATYPE = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


router = APIRouter(prefix="/v2", tags=["open inference protocol"])


def _v2_error(status: int, message: str) -> ApiError:
    return ApiError(status, message)


async def named_model(
    name: str, model: Annotated[LoadedModel, Depends(current_model)]
) -> LoadedModel:
    if name != model.ref.name:
        raise _v2_error(
            404, f"model {name!r} is not served here; this server serves {model.ref.name!r}"
        )
    return model


NamedModel = Annotated[LoadedModel, Depends(named_model)]


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "beyondfit", "version": "2", "extensions": []}


@router.get("/health/live", summary="Server live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Server ready")
async def server_ready(store: StoreDep) -> Response:
    ready = store.all_workers_loaded()
    return json_response({"ready": ready}, 200 if ready else 503)


@router.get("/models/{name}/ready", summary="Model ready")
async def model_ready(model: NamedModel) -> dict[str, Any]:
    return {"name": model.ref.name, "ready": True}


@router.get("/models/{name}", summary="Model metadata", dependencies=Protected)
async def model_metadata(model: NamedModel) -> dict[str, Any]:
    outputs = [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    if model.predictor.classes is not None:
        outputs.append(
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [-1, len(model.predictor.classes)],
            }
        )
    return {
        "name": model.ref.name,
        "versions": [model.ref.version],
        "platform": "mlflow-sklearn",
        "inputs": [
            {"name": c.name, "datatype": _SIGNATURE_DATATYPE[c.type], "shape": [-1]}
            for c in model.schema.columns
        ],
        "outputs": outputs,
    }


@router.post(
    "/models/{name}/infer", summary="Inference", dependencies=[*Protected, Depends(require_json)]
)
async def model_infer(request: Request, model: NamedModel, m: MetricsDep) -> Response:
    try:
        req = InferenceRequest.model_validate_json(await request.body())
    except ValidationError as e:
        details = describe_errors(e)
        status = 400 if any(d["type"] == "json_invalid" for d in details) else 422
        raise ApiError(status, f"{details[0]['field']}: {details[0]['message']}", details) from None
    rows = _to_rows(req, model)
    out = infer(model, rows, m)
    labels = out.labels
    outputs: list[dict[str, Any]] = [
        {
            "name": "predict",
            "shape": [len(labels)],
            "datatype": _datatype(labels),
            "data": [str(v) for v in labels.tolist()]
            if labels.dtype.kind in "OUS"
            else labels.tolist(),
        }
    ]
    if out.probabilities is not None:
        proba = out.probabilities
        outputs.append(
            {
                "name": "predict_proba",
                "shape": list(proba.shape),
                "datatype": "FP64",
                "data": proba.ravel().tolist(),
                "parameters": {"classes": [str(c) for c in model.predictor.classes or []]},
            }
        )
    if req.outputs:
        wanted = {o.name for o in req.outputs}
        unknown = wanted - {o["name"] for o in outputs}
        if unknown:
            raise ApiError(
                400,
                f"outputs: unknown output(s) {sorted(unknown)}; "
                "this model has predict, predict_proba",
            )
        outputs = [o for o in outputs if o["name"] in wanted]
    body: dict[str, Any] = {
        "model_name": model.ref.name,
        "model_version": model.ref.version,
        "outputs": outputs,
    }
    if req.id is not None:
        body["id"] = req.id
    return json_response(body)


def _datatype(values: np.ndarray) -> str:
    kind = values.dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}.get(kind, "BYTES")


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _numbers(tensor: RequestInput, where: str, kinds: set[str]) -> list[float]:
    """The values of a numeric tensor for columns of MLflow types ``kinds``, as floats."""
    if tensor.datatype not in _NUMERIC:
        raise ApiError(422, f"{where}.datatype: {tensor.datatype} is not numeric")
    if any(tensor.datatype not in _ACCEPTED[k] for k in kinds):
        wanted = " or ".join(sorted(kinds))
        raise ApiError(422, f"{where}.datatype: {tensor.datatype} for a {wanted} feature")
    values = _flatten(tensor.data)
    expected = math.prod(tensor.shape)
    if len(values) != expected:
        raise ApiError(
            422, f"{where}.data: shape {tensor.shape} needs {expected} values, got {len(values)}"
        )
    for i, v in enumerate(values):
        is_bool = isinstance(v, bool)
        if tensor.datatype == "BOOL":
            if not is_bool:
                raise ApiError(422, f"{where}.data[{i}]: {v!r} is not a boolean")
        elif is_bool or not isinstance(v, int | float):
            raise ApiError(422, f"{where}.data[{i}]: {v!r} is not a number")
        elif tensor.datatype in _INTEGERS and not isinstance(v, int):
            raise ApiError(422, f"{where}.data[{i}]: {v!r} is not an integer")
        elif isinstance(v, int) and not -_FLOAT_MAX <= v <= _FLOAT_MAX:
            raise ApiError(422, f"{where}.data[{i}]: {v} is out of the float64 range")
        elif not math.isfinite(v):
            raise ApiError(422, f"{where}.data[{i}]: {v!r} is not a finite number")
    return [float(v) for v in values]


def _strings(tensor: RequestInput, where: str, name: str) -> list[str]:
    if tensor.datatype != "BYTES":
        raise ApiError(
            422, f"{where}.datatype: {name!r} is a string column: send BYTES, not {tensor.datatype}"
        )
    values = _flatten(tensor.data)
    if len(values) != tensor.shape[0]:
        raise ApiError(
            422, f"{where}.data: shape {tensor.shape} needs {tensor.shape[0]}, got {len(values)}"
        )
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ApiError(422, f"{where}.data[{i}]: {v!r} is not a string")
    return values


def _to_rows(req: InferenceRequest, model: LoadedModel) -> ModelInput:
    schema = model.schema
    names = schema.names
    limit = schema.max_batch_size
    rows: ModelInput
    # The declared row count is checked before any value is looked at.
    for i, tensor in enumerate(req.inputs):
        if tensor.shape[0] > limit:
            raise ApiError(
                422, f"inputs[{i}].shape: {tensor.shape[0]} rows is over the limit of {limit}"
            )
    if len(req.inputs) == 1 and len(req.inputs[0].shape) == 2 and req.inputs[0].name not in names:
        if not schema.numeric:
            strings = [c.name for c in schema.columns if c.type == "string"]
            raise ApiError(
                422,
                f"inputs: this model has string column(s) {strings}: send one input per "
                "feature, not one [N, features] tensor",
            )
        tensor = req.inputs[0]
        n, f = tensor.shape
        if f != len(names):
            raise ApiError(
                422,
                f"inputs[0].shape: expected [N, {len(names)}] (features {names}), "
                f"got {tensor.shape}",
            )
        kinds = {c.type for c in schema.columns}
        rows = np.array(_numbers(tensor, "inputs[0]", kinds), dtype=np.float64).reshape(n, f)
    else:
        given = {t.name: (i, t) for i, t in enumerate(req.inputs)}
        if len(given) != len(req.inputs):
            names_given = [t.name for t in req.inputs]
            twice = sorted({name for name in names_given if names_given.count(name) > 1})
            raise ApiError(422, f"inputs: input(s) {twice} given more than once")
        missing = [n for n in names if n not in given]
        extra = [n for n in given if n not in names]
        if missing or extra:
            raise ApiError(
                422,
                "inputs: "
                + "; ".join(
                    ([f"missing feature(s) {missing}"] if missing else [])
                    + ([f"unknown input(s) {extra}"] if extra else [])
                ),
            )
        columns: list[list[Any]] = []
        n = -1
        for name in names:
            i, tensor = given[name]
            if len(tensor.shape) == 2 and tensor.shape[1] != 1:
                raise ApiError(
                    422,
                    f"inputs[{i}].shape: a per-feature tensor must be [N] or [N, 1], "
                    f"got {tensor.shape}",
                )
            if n not in (-1, tensor.shape[0]):
                raise ApiError(
                    422, f"inputs[{i}].shape: {tensor.shape[0]} rows, other inputs have {n}"
                )
            n = tensor.shape[0]
            kind = schema.columns[len(columns)].type
            if kind == "string":
                columns.append(_strings(tensor, f"inputs[{i}]", name))
            else:
                columns.append(_numbers(tensor, f"inputs[{i}]", {kind}))
        if schema.numeric:
            rows = np.array(columns, dtype=np.float64).T.reshape(n, len(names))
        else:
            rows = schema.columns_to_frame(columns)
    if len(rows) == 0:
        raise ApiError(422, "inputs: the batch is empty")
    if len(rows) > limit:
        raise ApiError(422, f"inputs: {len(rows)} rows is over the limit of {limit}")
    return rows


__all__ = ["ModelStore", "router"]
