"""Fixtures shared by every layer: settings -> servers -> registered model -> service."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.support.procs import MlflowServer, Service
from tests.support.s3 import S3Server, running_s3_server

MODEL_NAME = "beyondfit-classifier"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on a free loopback port, for the whole session; it is
    MLFLOW_TRACKING_URI meanwhile, so MLflow's own calls in the tests reach it."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(autouse=True)
def _tracking_uri_left_as_found() -> Iterator[None]:
    """MLflow keeps its tracking URI process-wide (a module global and MLFLOW_TRACKING_URI,
    which child processes inherit): a test that changes it and leaves it points every later
    test at a server that may be gone. Such a test fails here, and the URI is put back."""

    def state() -> tuple[object, str | None]:
        utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
        return getattr(utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")

    before = state()
    yield
    after = state()
    if after != before:
        utils = sys.modules["mlflow.tracking._tracking_service.utils"]
        utils._tracking_uri = before[0]
        if before[1] is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before[1]
        pytest.fail(f"the test left MLflow's tracking URI changed: {before} -> {after}")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    feature_names: list[str]
    X_test: pd.DataFrame
    y_test: pd.Series


@pytest.fixture(scope="session")
def registered_model(mlflow_server: MlflowServer) -> RegisteredModel:
    """breast-cancer logistic regression, registered as beyondfit-classifier@champion."""
    from training.data import load_dataset, split
    from training.train import TrainConfig, train

    config = TrainConfig(tracking_uri=mlflow_server.url, model_name=MODEL_NAME)
    result = train(config)
    assert result.promoted, result.gate_reason
    X, y, _ = load_dataset(config.dataset)
    _, X_test, _, y_test = split(X, y, config.test_size, config.seed)
    return RegisteredModel(
        MODEL_NAME, str(result.version), result.run_id, result.feature_names, X_test, y_test
    )


@pytest.fixture
def start_service(tmp_path: Path, mlflow_server: MlflowServer) -> Iterator[Callable[..., Service]]:
    """Factory: start_service(workers=2, **env) -> a running gunicorn service.

    Every service it started is stopped at teardown."""
    started: list[Service] = []

    def start(workers: int = 2, **env: str) -> Service:
        full_env = {
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "BEYONDFIT_RELOAD_INTERVAL_SECONDS": "1",
        }
        full_env.update(env)
        service = Service(tmp_path, full_env, workers=workers)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on a free loopback port, for one test."""
    with running_s3_server(tmp_path) as server:
        yield server
