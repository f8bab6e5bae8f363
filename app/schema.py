"""Request validation built from an MLflow model signature, for any column-based signature
with numeric, boolean or string columns: the JSON schema, the example and the checks all come
from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

# MLflow column type -> the JSON values accepted for it, validated in strict mode.
# Integers are accepted for floating
# columns (1 and 1.0 mean the same); nothing else is coerced: "1", true or 1.5 for an integer
# column are errors, never silently converted.
_TYPES: dict[str, Any] = {
    "double": float,
    "float": float,
    "long": int,
    "integer": int,
    "boolean": bool,
    "string": str,
}


ModelInput: TypeAlias = np.ndarray | pd.DataFrame
"""A batch as the model takes it: rows x columns in signature order."""


class UnsupportedSignatureError(ValueError):
    """The model's signature cannot be served by this service."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class InputSchema:
    """The model's input columns and the validator of a /predict body built from them."""

    columns: tuple[Column, ...]
    max_batch_size: int
    adapter: TypeAdapter[Any]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """Validates a JSON body; returns its rows. Raises pydantic's ValidationError."""
        payload = self.adapter.validate_json(body)
        rows: list[dict[str, Any]] = payload["instances"]
        return rows

    @property
    def numeric(self) -> bool:
        """Whether every column is numeric or boolean: the model then takes a float array."""
        return all(c.type != "string" for c in self.columns)

    def to_array(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """rows x columns float64, in signature order (numeric schemas only)."""
        names = self.names
        return np.array([[row[n] for n in names] for row in rows], dtype=np.float64)

    def to_frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """A DataFrame in signature order: string columns as Python strings (object dtype),
        every other column as float64, the values the float array would hold."""
        return self.columns_to_frame([[row[c.name] for row in rows] for c in self.columns])

    def columns_to_frame(self, columns: list[list[Any]]) -> pd.DataFrame:
        """The same DataFrame from one list of values per column, in signature order."""
        return pd.DataFrame(
            {
                c.name: pd.Series(values, dtype=object if c.type == "string" else np.float64)
                for c, values in zip(self.columns, columns, strict=True)
            }
        )

    def model_input(self, rows: list[dict[str, Any]]) -> ModelInput:
        """What the predictor takes: a float array, or a DataFrame when there are strings."""
        return self.to_array(rows) if self.numeric else self.to_frame(rows)

    def json_schema(self) -> dict[str, Any]:
        return self.adapter.json_schema()

    def same_as(self, other: InputSchema) -> str | None:
        """None when both accept the same columns with the same types, else the difference."""
        mine, theirs = (
            {c.name: c.type for c in self.columns},
            {c.name: c.type for c in other.columns},
        )
        missing = sorted(set(mine) - set(theirs))
        extra = sorted(set(theirs) - set(mine))
        changed = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
        if not (missing or extra or changed):
            return None
        parts = []
        if missing:
            parts.append(f"columns no longer accepted: {missing}")
        if extra:
            parts.append(f"new columns required: {extra}")
        if changed:
            parts.append(f"column types changed: {changed}")
        return "; ".join(parts)


def input_schema(signature: Any, max_batch_size: int) -> InputSchema:
    """Builds the InputSchema from a model signature: an mlflow.models.ModelSignature, or the
    `signature` mapping of an MLmodel file (its `inputs` a JSON list of column specs)."""
    if signature is not None and hasattr(signature, "to_dict"):
        signature = signature.to_dict()
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    if not inputs:
        raise UnsupportedSignatureError("the model has no input signature; log it with one")
    specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    if any(spec.get("type") == "tensor" for spec in specs):
        raise UnsupportedSignatureError(
            "tensor-based signatures are not served; log a column-based one"
        )
    columns = []
    for spec in specs:
        name, type_name = spec.get("name"), spec.get("type")
        if name is None:
            raise UnsupportedSignatureError("the signature has unnamed columns")
        if type_name not in _TYPES:
            raise UnsupportedSignatureError(
                f"column {name!r} has type {type_name}; "
                "only numeric, boolean and string columns are served"
            )
        columns.append(Column(name, type_name))
    row_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, title="Instance")
    fields: dict[str, Any] = {c.name: _TYPES[c.type] for c in columns}
    row: Any = with_config(row_config)(TypedDict("Instance", fields))  # type: ignore[operator]
    batch = Annotated[list[row], Field(min_length=1, max_length=max_batch_size)]
    request_config = ConfigDict(extra="forbid", title="PredictRequest")
    request: Any = with_config(request_config)(TypedDict("PredictRequest", {"instances": batch}))  # type: ignore[operator]
    return InputSchema(tuple(columns), max_batch_size, TypeAdapter(request))


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as {field, message, type}, the field spelled like `instances[3].age`."""
    details = []
    for e in error.errors(include_url=False, include_input=False):
        field = ""
        for part in e["loc"]:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        details.append({"field": field or "body", "message": e["msg"], "type": e["type"]})
    return details


ErrorKind = Literal["invalid_json", "validation"]


def error_kind(error: ValidationError) -> ErrorKind:
    return (
        "invalid_json" if any(e["type"] == "json_invalid" for e in error.errors()) else "validation"
    )
