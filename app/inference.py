"""One model call with its metrics, shared by /predict and the V2 infer endpoint."""

from __future__ import annotations

import time

import numpy as np

from app.metrics import Metrics
from app.model_store import LoadedModel
from app.predictor import Prediction
from app.schema import ModelInput


def infer(model: LoadedModel, rows: ModelInput, metrics: Metrics) -> Prediction:
    version = model.ref.version
    start = time.perf_counter()
    out = model.predict(rows)
    metrics.inference_duration.labels(version).observe(time.perf_counter() - start)

    labels, counts = np.unique(out.labels, return_counts=True)
    for label, n in zip(labels, counts, strict=True):
        metrics.predictions.labels(
            version, str(label.item() if isinstance(label, np.generic) else label)
        ).inc(int(n))
    if out.probabilities is not None:
        proba = out.probabilities
        scores = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
        histogram = metrics.prediction_score.labels(version)
        for score in scores.tolist():
            histogram.observe(score)
    if model.bins is not None:
        model.bins.count(rows)
    return out
