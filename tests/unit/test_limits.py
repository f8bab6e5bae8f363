"""Limits and authentication that every request meets before a route parses it, and the
bounded labels of the request metrics: the real app through TestClient (the gunicorn-level
checks, header deadline and connection cap, are in tests/integration/test_limits.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer

from app.main import create_app
from app.metrics import Metrics
from app.settings import Settings
from tests.unit.test_app import MemoryStore, fitted

KEY = "unit-test-key"


@pytest.fixture(scope="module")
def cancer() -> tuple[Any, pd.DataFrame]:
    return fitted(load_breast_cancer)


def _client(cancer: tuple[Any, pd.DataFrame], **settings: Any) -> Iterator[TestClient]:
    s = Settings(
        reload_interval_seconds=0.05,
        max_batch_size=20,
        mlflow_tracking_uri="http://127.0.0.1:9",
        **settings,
    )
    store = MemoryStore(s, Metrics(), {"1": cancer})
    with TestClient(create_app(s, store)) as c:
        deadline = time.monotonic() + 30
        while c.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        yield c


@pytest.fixture
def client(cancer: tuple[Any, pd.DataFrame]) -> Iterator[TestClient]:
    yield from _client(cancer, max_body_bytes=4096)


@pytest.fixture
def keyed(cancer: tuple[Any, pd.DataFrame]) -> Iterator[TestClient]:
    yield from _client(cancer, api_key=KEY)


def test_an_empty_api_key_stops_startup_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for empty in ("", "  "):
        monkeypatch.setenv("BEYONDFIT_API_KEY", empty)
        with pytest.raises(ValidationError, match="BEYONDFIT_API_KEY is set but empty"):
            Settings()
    monkeypatch.delenv("BEYONDFIT_API_KEY")
    assert Settings().api_key is None


def test_with_a_key_the_model_docs_and_openapi_need_it_and_health_does_not(
    keyed: TestClient,
) -> None:
    for path in ("/model", "/docs", "/openapi.json", "/redoc", "/v2/models/beyondfit-classifier"):
        r = keyed.get(path)
        assert r.status_code == 401, path
        assert "input_example" not in r.text, path
        assert "mean radius" not in r.text, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert keyed.get(path, headers={"X-API-Key": "wrong"}).status_code == 401, path
        assert keyed.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        assert keyed.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    for path in ("/health", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert keyed.get(path).status_code == 200, path


def test_a_body_over_the_limit_is_refused_from_its_content_length(client: TestClient) -> None:
    r = client.post("/predict", content=b"x" * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "5000 bytes is over the limit of 4096" in r.json()["error"]
    assert r.headers["connection"] == "close"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_a_streamed_body_is_cut_once_over_the_limit(client: TestClient) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b" " * 1024

    r = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "over the limit of 4096 bytes" in r.json()["error"]
    v2 = client.post(
        "/v2/models/beyondfit-classifier/infer",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert v2.status_code == 413


def test_v2_checks_the_declared_rows_before_any_value(client: TestClient) -> None:
    body = {"inputs": [{"name": "x", "shape": [300000, 30], "datatype": "FP64", "data": [0.5]}]}
    r = client.post("/v2/models/beyondfit-classifier/infer", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "inputs[0].shape: 300000 rows is over the limit of 20"


def test_invented_methods_and_paths_add_no_series(client: TestClient) -> None:
    metrics: Metrics = client.app.state.metrics  # type: ignore[attr-defined]

    def series() -> set[tuple[str, ...]]:
        return {
            tuple(sorted(s.labels.items()))
            for fam in metrics.registry.collect()
            if fam.name in ("http_requests", "http_request_duration_seconds")
            for s in fam.samples
        }

    client.request("BREW", "/warmup")
    client.request("GET", "/warmup-2")
    before = series()
    for i in range(300):
        client.request(f"M{i}X", f"/p/{i}")
        client.request("GET", f"/other/{i}")
    after = series()
    assert after == before, sorted(after - before)[:5]
    assert (
        metrics.registry.get_sample_value(
            "http_requests_total", {"method": "other", "route": "unmatched", "status": "404"}
        )
        == 301
    )


def test_with_a_metrics_port_metrics_are_served_there_alone(
    cancer: tuple[Any, pd.DataFrame],
) -> None:
    for client in _client(cancer, metrics_port=9107):
        api, metrics_port = "http://testserver:8000", "http://testserver:9107"
        assert client.get(f"{api}/metrics").status_code == 404
        assert client.get(f"{metrics_port}/metrics").status_code == 200
        assert "model_loaded" in client.get(f"{metrics_port}/metrics").text
        for path in ("/health", "/model", "/docs"):
            assert client.get(f"{metrics_port}{path}").status_code == 404, path
        assert client.get(f"{api}/health").status_code == 200


def test_the_version_header_names_the_version_that_answered_during_a_swap(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from app.model_store import ModelStore
    from app.predictor import SklearnPredictor

    store: ModelStore = client.app.state.store  # type: ignore[attr-defined]
    served = store.current
    assert served is not None
    newer = dataclasses.replace(served, ref=dataclasses.replace(served.ref, version="2"))
    predict = SklearnPredictor.predict

    def swap_meanwhile(self: SklearnPredictor, rows: Any) -> Any:
        store.current = newer  # the watcher swaps while this request is in the model
        return predict(self, rows)

    monkeypatch.setattr(SklearnPredictor, "predict", swap_meanwhile)
    row = served.input_example[0]
    r = client.post("/predict", json={"instances": [row]})
    assert r.status_code == 200
    assert r.json()["model_version"] == "1"
    assert r.headers["x-model-version"] == "1"
    store.current = newer
    v2 = client.post(
        "/v2/models/beyondfit-classifier/infer",
        json={
            "inputs": [
                {"name": k, "shape": [1], "datatype": "FP64", "data": [float(v)]}
                for k, v in row.items()
            ]
        },
    )
    assert v2.json()["model_version"] == v2.headers["x-model-version"] == "2"
