"""The one small interface every model call goes through: a float array in (a DataFrame when
the signature has string columns), predictions out.

A later compiled path (ONNX Runtime) or micro-batching plugs in here without touching routes;
it applies to the all-numeric models, which is where the float array is used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sklearn

from app.schema import ModelInput

# The fast path hands sklearn an array in the model's own column order; the warning that the
# array carries no column names would only cost time on every call.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@dataclass(frozen=True, slots=True)
class Prediction:
    labels: np.ndarray
    """One predicted label per row."""
    probabilities: np.ndarray | None
    """rows x classes, when the model has predict_proba."""


class Predictor(Protocol):
    classes: list[Any] | None
    """Class labels in the column order of `Prediction.probabilities`."""

    def predict(self, rows: ModelInput) -> Prediction:
        """rows: a 2-D float array, or a DataFrame when the signature has string columns;
        columns in the order of the model's input signature."""
        ...


class SklearnPredictor:
    """Calls a scikit-learn estimator (or Pipeline) directly on a float array (or a frame).

    A Pipeline's transforms run once per request, and the final estimator's predict and
    predict_proba both take their output (the Pipeline would run them twice). The request
    validation has already refused NaN and infinity, so scikit-learn's finiteness scan is
    skipped; labels still come from the estimator's own predict, never re-derived.
    """

    def __init__(self, estimator: Any, columns: list[str]) -> None:
        self._estimator = estimator
        steps = getattr(estimator, "steps", None)
        self._transforms = estimator[:-1] if steps and len(steps) > 1 else None
        self._final = estimator[-1] if steps else estimator
        self._order: list[int] | None = None
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None and list(fitted) != columns:
            self._order = [columns.index(str(name)) for name in fitted]
        has_proba = callable(getattr(estimator, "predict_proba", None))
        self._has_proba = has_proba
        classes = getattr(estimator, "classes_", None)
        self.classes = [_plain(c) for c in classes] if has_proba and classes is not None else None

    def predict(self, rows: ModelInput) -> Prediction:
        # A DataFrame carries its column names: scikit-learn matches them itself.
        if self._order is not None and isinstance(rows, np.ndarray):
            rows = rows[:, self._order]
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            features = self._transforms.transform(rows) if self._transforms is not None else rows
            labels = np.asarray(self._final.predict(features))
            proba = np.asarray(self._final.predict_proba(features)) if self._has_proba else None
        return Prediction(labels, proba)


class PyfuncPredictor:
    """Fallback for models whose raw estimator is not reachable: MLflow's pyfunc on a frame."""

    def __init__(self, model: Any, columns: list[str]) -> None:
        self._model = model
        self._columns = columns
        self.classes: list[Any] | None = None

    def predict(self, rows: ModelInput) -> Prediction:
        frame = (
            rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=self._columns)
        )
        out = self._model.predict(frame)
        if isinstance(out, pd.DataFrame):
            out = out.iloc[:, 0]
        return Prediction(np.asarray(out).reshape(len(rows)), None)


def _plain(value: Any) -> Any:
    """numpy scalars to plain Python, so labels serialise to JSON as the model spells them."""
    return value.item() if isinstance(value, np.generic) else value
