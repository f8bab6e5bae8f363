"""The service without servers: validation, the swap logic, metrics, routes via TestClient.

The registry is replaced by in-memory models here (a real MLflow server is in the integration
layer); everything else is the real code.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.models import infer_signature
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from app.errors import INTERNAL_ERROR
from app.logs import JsonFormatter
from app.main import create_app
from app.metrics import FeatureBinCounter, Metrics
from app.model_store import LoadedModel, ModelRef, ModelRefusedError, ModelStore, parse_model_uri
from app.predictor import SklearnPredictor
from app.schema import UnsupportedSignatureError, input_schema
from app.settings import Settings
from training.reference import compute_bins


def fitted(dataset: Any, C: float = 1.0) -> tuple[Any, pd.DataFrame]:
    X, y = dataset(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X, y)
    return model, X


class MemoryStore(ModelStore):
    """A ModelStore whose registry is a dict of version -> (estimator, training frame)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, versions: dict[str, tuple[Any, pd.DataFrame]]
    ) -> None:
        super().__init__(settings, metrics)
        self.versions = versions
        self.alias_version = "1"

    def resolve(self) -> ModelRef:
        return ModelRef(self.name, self.alias_version, self.alias, f"run-{self.alias_version}")

    def load(self, ref: ModelRef) -> LoadedModel:
        estimator, X = self.versions[ref.version]
        schema = input_schema(
            infer_signature(X, estimator.predict(X)), self.settings.max_batch_size
        )
        if self.current is not None and (diff := self.current.schema.same_as(schema)):
            raise ModelRefusedError(diff)
        bins = compute_bins(X)["features"]
        return LoadedModel(
            ref,
            schema,
            SklearnPredictor(estimator, schema.names),
            {},
            X.head(2).to_dict(orient="records"),
            FeatureBinCounter(self.metrics, bins, schema.names),
        )


@pytest.fixture(scope="module")
def cancer() -> tuple[Any, pd.DataFrame]:
    return fitted(load_breast_cancer)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        reload_interval_seconds=0.05, max_batch_size=20, mlflow_tracking_uri="http://127.0.0.1:9"
    )


@pytest.fixture
def store(settings: Settings, cancer: tuple[Any, pd.DataFrame]) -> MemoryStore:
    return MemoryStore(
        settings,
        Metrics(),
        {"1": cancer, "2": fitted(load_breast_cancer, C=0.01), "3": fitted(load_wine)},
    )


@pytest.fixture
def client(settings: Settings, store: MemoryStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as c:
        deadline = time.monotonic() + 30
        while c.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        yield c


def test_model_uri_forms() -> None:
    assert parse_model_uri("models:/m@champion") == ("m", "champion", None)
    assert parse_model_uri("models:/m/3") == ("m", None, "3")
    with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
        parse_model_uri("runs:/abc/model")
    with pytest.raises(ValueError, match="names no alias or version"):
        parse_model_uri("models:/m")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEYONDFIT_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("BEYONDFIT_API_KEY", "k")
    s = Settings()
    assert (s.max_batch_size, s.mlflow_tracking_uri, s.api_key) == (7, "http://mlflow:5000", "k")
    monkeypatch.setenv("BEYONDFIT_WORKERS", "zero")
    with pytest.raises(ValidationError, match="workers"):
        Settings()


def test_schema_validates_strictly(cancer: tuple[Any, pd.DataFrame]) -> None:
    model, X = cancer
    schema = input_schema(infer_signature(X, model.predict(X)), 5)
    row = {k: float(v) for k, v in X.iloc[0].items()}
    assert schema.parse(json.dumps({"instances": [row, row]}).encode()) == [row, row]
    arr = schema.to_array([row])
    assert arr.shape == (1, 30)
    assert arr.dtype == np.float64
    for bad in ({**row, "mean radius": "1"}, {**row, "mean radius": True}, {**row, "extra": 1.0}):
        with pytest.raises(ValidationError):
            schema.parse(json.dumps({"instances": [bad]}).encode())
    with pytest.raises(ValidationError, match="at most 5"):
        schema.parse(json.dumps({"instances": [row] * 6}).encode())
    ints = input_schema(infer_signature(pd.DataFrame({"n": [1, 2]}), np.array([0, 1])), 5)
    with pytest.raises(ValidationError, match="valid integer"):
        ints.parse(b'{"instances": [{"n": 1.5}]}')


def test_string_columns_are_validated_and_reach_the_model_as_a_frame() -> None:
    frame = pd.DataFrame({"city": ["oslo", "rome"], "size": [1.5, 2.0], "rooms": [2, 3]})
    schema = input_schema(infer_signature(frame, np.array([0, 1])), 5)
    assert not schema.numeric
    row = {"city": "oslo", "size": 2.5, "rooms": 4}
    rows = schema.parse(json.dumps({"instances": [row]}).encode())
    model_input = schema.model_input(rows)
    assert isinstance(model_input, pd.DataFrame)
    assert list(model_input.columns) == ["city", "size", "rooms"]
    assert model_input.dtypes.to_dict() == {
        "city": np.dtype(object),
        "size": np.float64,
        "rooms": np.float64,
    }
    assert model_input.iloc[0].tolist() == ["oslo", 2.5, 4.0]
    for bad in ({**row, "city": 3}, {**row, "city": None}, {**row, "size": "2.5"}):
        with pytest.raises(ValidationError):
            schema.parse(json.dumps({"instances": [bad]}).encode())
    numeric = input_schema(infer_signature(frame[["size"]], np.array([0, 1])), 5)
    assert numeric.numeric
    assert isinstance(numeric.model_input([{"size": 1.0}]), np.ndarray)


def test_schema_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(UnsupportedSignatureError, match="no input signature"):
        input_schema(None, 5)
    when = infer_signature(
        pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-01-02"])}), np.array([0, 1])
    )
    with pytest.raises(UnsupportedSignatureError, match="only numeric, boolean and string"):
        input_schema(when, 5)
    tensor = infer_signature(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(UnsupportedSignatureError, match="tensor-based"):
        input_schema(tensor, 5)


def test_schema_difference_is_described(cancer: tuple[Any, pd.DataFrame]) -> None:
    model, X = cancer
    a = input_schema(infer_signature(X, model.predict(X)), 5)
    wine_model, W = fitted(load_wine)
    b = input_schema(infer_signature(W, wine_model.predict(W)), 5)
    assert a.same_as(a) is None
    diff = a.same_as(b)
    assert diff is not None
    assert "columns no longer accepted" in diff
    assert "alcohol" in diff


def test_feature_bins_count_live_rows() -> None:
    metrics = Metrics()
    bins = {"x": {"edges": [1.0, 2.0], "ratios": [0.2, 0.3, 0.5]}}
    counter = FeatureBinCounter(metrics, bins, ["x", "unbinned"])
    counter.count(np.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [9.0, 0.0]]))
    counter.count(np.array([[-100.0, 0.0]]))
    reg = metrics.registry
    assert reg.get_sample_value("model_feature_bin_total", {"feature": "x", "bin": "0"}) == 2
    assert reg.get_sample_value("model_feature_bin_total", {"feature": "x", "bin": "1"}) == 2
    assert reg.get_sample_value("model_feature_bin_total", {"feature": "x", "bin": "2"}) == 1
    assert (
        reg.get_sample_value("model_feature_reference_ratio", {"feature": "x", "bin": "2"}) == 0.5
    )
    assert (
        reg.get_sample_value("model_feature_bin_total", {"feature": "unbinned", "bin": "0"}) is None
    )


def test_feature_bins_count_categories_and_put_unseen_values_in_other() -> None:
    metrics = Metrics()
    bins = {
        "city": {"categories": ["oslo", "rome"], "ratios": [0.5, 0.4, 0.1]},
        "x": {"edges": [1.0], "ratios": [0.5, 0.5]},
    }
    counter = FeatureBinCounter(metrics, bins, ["city", "x"])
    frame = pd.DataFrame({"city": ["rome", "lima", "rome", "paris"], "x": [0.0, 2.0, 2.0, 2.0]})
    counter.count(frame)
    counter.count(pd.DataFrame({"city": ["oslo"], "x": [0.0]}))

    def count(feature: str, b: str) -> float | None:
        labels = {"feature": feature, "bin": b}
        return metrics.registry.get_sample_value("model_feature_bin_total", labels)

    assert [count("city", b) for b in "012"] == [1, 2, 2]  # oslo, rome, other
    assert [count("x", b) for b in "01"] == [2, 3]
    ratio = metrics.registry.get_sample_value(
        "model_feature_reference_ratio", {"feature": "city", "bin": "2"}
    )
    assert ratio == 0.1


def test_predict_matches_the_estimator(
    client: TestClient, cancer: tuple[Any, pd.DataFrame]
) -> None:
    model, X = cancer
    rows = [{k: float(v) for k, v in r.items()} for r in X.iloc[:10].to_dict(orient="records")]
    body = client.post("/predict", json={"instances": rows}).json()
    assert body["predictions"] == model.predict(X.iloc[:10]).tolist()
    assert np.array_equal(body["probabilities"], model.predict_proba(X.iloc[:10]))
    assert body["model_version"] == "1"
    metrics = client.app.state.metrics.registry  # type: ignore[attr-defined]
    predicted = [
        metrics.get_sample_value(
            "model_predictions_total", {"model_version": "1", "predicted_class": c}
        )
        or 0
        for c in ("0", "1")
    ]
    assert sum(predicted) == 10
    assert metrics.get_sample_value("model_prediction_score_count", {"model_version": "1"}) == 10
    assert (
        metrics.get_sample_value(
            "http_requests_total", {"method": "POST", "route": "/predict", "status": "200"}
        )
        == 1
    )
    assert metrics.get_sample_value("model_loaded") == 1


def test_errors_are_json_and_never_5xx(client: TestClient) -> None:
    assert client.post("/predict", json={"instances": [{}] * 21}).status_code == 422
    r = client.get("/no/such/path")
    assert r.status_code == 404
    assert r.json()["error"] == "Not Found"
    assert client.get("/v2/models/other").status_code == 404
    assert client.post("/bench/constant").status_code == 404  # off unless enabled


def test_an_unexpected_error_is_a_json_500_with_the_request_id_in_answer_and_log(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Any, rows: Any) -> Any:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(SklearnPredictor, "predict", boom)
    row = client.get("/model").json()["input_example"][0]
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter())  # formats at the call, inside the request's context
    errors = logging.getLogger("beyondfit.errors")
    errors.addHandler(handler)
    try:
        r = client.post("/predict", json={"instances": [row]}, headers={"X-Request-ID": "rid-42"})
    finally:
        errors.removeHandler(handler)

    assert r.status_code == 500
    assert r.json() == {"error": INTERNAL_ERROR, "request_id": "rid-42"}
    assert r.headers["x-request-id"] == "rid-42"
    assert r.headers["x-model-version"] == "1"
    assert "model exploded" not in r.text
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["request_id"] == "rid-42"
    assert lines[0]["level"] == "ERROR"
    assert "model exploded" in json.dumps(lines[0])  # the traceback is in the log, not the answer


def test_store_swaps_compatible_versions_and_refuses_others(
    store: MemoryStore, client: TestClient
) -> None:
    assert store.current is not None
    assert store.current.ref.version == "1"
    store.alias_version = "2"
    wait_until(lambda: store.current is not None and store.current.ref.version == "2")
    store.alias_version = "3"  # the wine model: other columns
    metrics = store.metrics.registry
    wait_until(lambda: metrics.get_sample_value("model_reloads_total", {"result": "refused"}) == 1)
    time.sleep(0.2)  # further checks do not retry a refused version
    assert metrics.get_sample_value("model_reloads_total", {"result": "refused"}) == 1
    assert store.current.ref.version == "2"
    assert (
        metrics.get_sample_value(
            "model_info",
            {
                "name": "beyondfit-classifier",
                "version": "1",
                "alias": "champion",
                "run_id": "run-1",
            },
        )
        == 0
    )
    assert (
        metrics.get_sample_value(
            "model_info",
            {
                "name": "beyondfit-classifier",
                "version": "2",
                "alias": "champion",
                "run_id": "run-2",
            },
        )
        == 1
    )
    assert metrics.get_sample_value("model_reloads_total", {"result": "success"}) == 2
    assert client.get("/model").json()["version"] == "2"


def test_unreachable_registry_keeps_the_process_alive_and_not_ready(settings: Settings) -> None:
    store = ModelStore(settings, Metrics())  # the real store, pointed at a closed port
    with TestClient(create_app(settings, store)) as c:
        time.sleep(1)
        assert c.get("/health").status_code == 200
        assert c.get("/health/ready").status_code == 503
        assert c.get("/v2/health/ready").json() == {"ready": False}
        r = c.post("/predict", json={"instances": [{"a": 1}]})
        assert r.status_code == 503
        assert "no model is loaded" in r.json()["error"]


def test_openapi_carries_the_model_schema_and_example(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    content = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "mean radius" in doc["components"]["schemas"]["Instance"]["properties"]
    assert len(content["example"]["instances"]) == 2


def wait_until(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        asyncio.run(asyncio.sleep(0.02))
