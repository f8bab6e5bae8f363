"""Held-out metrics, shared by the trainer, the quality gate and ``reproduce``."""

# ruff: noqa: N803 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

#: Metric name -> True when higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
}
METRICS: tuple[str, ...] = tuple(HIGHER_IS_BETTER)


def f1_average(n_classes: int) -> str:
    """The F1 averaging for a target of ``n_classes``: ``binary`` for two, else ``macro``."""
    return "binary" if n_classes == 2 else "macro"


def classification_metrics(model: Any, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """accuracy, f1, roc_auc (one-vs-rest when multiclass) and log_loss of ``model`` on X, y.

    ``model`` is a fitted scikit-learn classifier with ``predict_proba`` and ``classes_``.
    For a binary target the positive class is ``classes_[1]``.
    """
    classes = np.asarray(model.classes_)
    unknown = sorted(set(pd.unique(y)) - set(classes.tolist()), key=str)
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's classes {classes.tolist()}")
    predicted = model.predict(X)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if len(classes) == 2:
        f1 = f1_score(y, predicted, average="binary", pos_label=classes[1])
        auc = roc_auc_score(y, proba[:, 1])
    else:
        f1 = f1_score(y, predicted, average="macro", labels=classes)
        auc = roc_auc_score(y, proba, multi_class="ovr", labels=classes)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1),
        "roc_auc": float(auc),
        "log_loss": float(log_loss(y, proba, labels=classes)),
    }


def is_not_worse(metric: str, new: float, champion: float, tolerance: float) -> bool:
    """True when ``new`` is at least ``champion`` within ``tolerance`` on ``metric``."""
    if HIGHER_IS_BETTER[metric]:
        return new >= champion - tolerance
    return new <= champion + tolerance
