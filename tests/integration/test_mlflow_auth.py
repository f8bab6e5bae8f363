"""MLflow with its basic-auth app, configured as charts/mlflow configures it: anonymous
clients are refused, the service reads with a read-only user, the trainer writes with its own.
(The same on the local cluster: tests/e2e.)"""

from __future__ import annotations

import configparser
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import MODEL_NAME
from tests.support.metrics import sample_value, scrape
from tests.support.procs import MlflowServer, Service

pytestmark = pytest.mark.slow

ADMIN = ("admin", "admin-pass-for-tests")
SERVICE_USER = ("beyondfit", "service-pass-for-tests")
TRAINER = ("trainer", "trainer-pass-for-tests")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    work = tmp_path_factory.mktemp("mlflow-auth")
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {  # what the chart writes at start
        "default_permission": "READ",
        "database_uri": f"sqlite:///{work / 'basic_auth.db'}",
        "admin_username": ADMIN[0],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    with (work / "basic_auth.ini").open("w") as f:
        config.write(f)
    server = MlflowServer(
        work,
        extra_args=["--app-name", "basic-auth"],
        extra_env={
            "MLFLOW_AUTH_CONFIG_PATH": str(work / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-for-tests",
        },
    ).start()
    for user, password in (SERVICE_USER, TRAINER):  # what the chart's user Job does
        r = httpx.post(
            f"{server.url}/api/2.0/mlflow/users/create",
            json={"username": user, "password": password},
            auth=ADMIN,
            timeout=30,
        )
        assert r.status_code == 200, r.text
    yield server
    server.stop()


def move_alias(server: MlflowServer, version: str, auth: tuple[str, str] | None) -> int:
    r = httpx.post(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": MODEL_NAME, "alias": "champion", "version": version},
        auth=auth,
        timeout=30,
    )
    return r.status_code


def test_with_auth_only_the_trainer_moves_the_alias_and_the_service_reads_with_its_user(
    auth_server: MlflowServer,
    start_service: Callable[..., Service],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.train import TrainConfig, train

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", TRAINER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TRAINER[1])
    first = train(TrainConfig(tracking_uri=auth_server.url))
    assert first.promoted
    second = train(TrainConfig(tracking_uri=auth_server.url, C=0.5, force=True))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")

    # nobody but the trainer (who registered the model) moves @champion
    assert move_alias(auth_server, str(first.version), None) == 401
    assert move_alias(auth_server, str(first.version), ("beyondfit", "wrong")) == 401
    assert move_alias(auth_server, str(first.version), SERVICE_USER) == 403
    upload = httpx.put(
        f"{auth_server.url}/api/2.0/mlflow-artifacts/artifacts/1/x/artifacts/model/MLmodel",
        content=b"flavors: {}",
        timeout=30,
    )
    assert upload.status_code == 401
    assert move_alias(auth_server, str(first.version), TRAINER) == 200

    svc = start_service(
        MLFLOW_TRACKING_URI=auth_server.url,
        MLFLOW_TRACKING_USERNAME=SERVICE_USER[0],
        MLFLOW_TRACKING_PASSWORD=SERVICE_USER[1],
    )
    svc.wait_ready(180)
    info = httpx.get(f"{svc.url}/model").json()
    assert (info["version"], info["loader"]) == (str(first.version), "direct")
    assert move_alias(auth_server, str(second.version), TRAINER) == 200
    served = None
    deadline = time.monotonic() + 60
    while served != str(second.version) and time.monotonic() < deadline:
        time.sleep(0.5)
        served = httpx.get(f"{svc.url}/model").json()["version"]
    assert served == str(second.version), svc.log_text()[-2000:]

    # without credentials the service never loads: every registry call is refused
    anonymous = start_service(
        MLFLOW_TRACKING_URI=auth_server.url, BEYONDFIT_LOAD_RETRY_MAX_SECONDS="1"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        errors = sample_value(scrape(anonymous.url), "model_reloads_total", result="error")
        if errors and errors >= 2:
            break
        time.sleep(0.5)
    assert httpx.get(f"{anonymous.url}/health/ready").status_code == 503
    assert "HTTP 401" in anonymous.log_text()
