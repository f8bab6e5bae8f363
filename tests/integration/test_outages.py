"""Serving through a bad day, against a real MLflow and real gunicorn: MLflow stopped while a
worker is killed and while the server restarts, a truncated artifact, a download that
trickles."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import mlflow.artifacts
import pytest
import yaml

from tests.conftest import RegisteredModel
from tests.integration.test_model_trust import register_dir
from tests.integration.test_service import rows
from tests.support.metrics import sample_value, scrape
from tests.support.procs import MlflowServer, Service, free_port

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise TimeoutError(what)


def test_with_mlflow_down_a_replacement_worker_and_a_restarted_server_serve_the_kept_copy(
    tmp_path: Path, start_service: Callable[..., Service], registered_model: RegisteredModel
) -> None:
    from training.train import TrainConfig, train

    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        version = str(train(TrainConfig(tracking_uri=server.url)).version)
        cache = tmp_path / "kept"  # the pod's /tmp emptyDir
        env = {"MLFLOW_TRACKING_URI": server.url, "BEYONDFIT_MODEL_CACHE_DIR": str(cache)}
        svc = start_service(**env)
        svc.wait_ready(180)
    finally:
        server.stop()
    body = {"instances": rows(registered_model, 2)}

    killed = svc.worker_pids()[0]
    os.kill(killed, signal.SIGKILL)
    wait_for(
        lambda: len(svc.worker_pids()) == 2 and killed not in svc.worker_pids(),
        60,
        "no replacement worker",
    )
    # the replacement loads the kept copy before it accepts connections: the server stays
    # ready and every worker answers
    svc.wait_ready(60)
    for _ in range(20):  # new connections, spread over both workers
        r = httpx.post(f"{svc.url}/predict", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == r.headers["x-model-version"] == version
    assert "serving the kept copy of the last version" in svc.log_text()

    # a new server (a restarted container) with MLflow still down
    svc.stop()
    again = start_service(**env)
    again.wait_ready(120)
    assert httpx.get(f"{again.url}/model").json()["loader"] == "cache"
    assert httpx.post(f"{again.url}/predict", json=body, timeout=30).status_code == 200
    again.stop()

    # a kept copy that does not match its recorded sha256 is never served
    (kept,) = [p for p in cache.rglob("*.skops") if p.parent.name == version]
    kept.write_bytes(kept.read_bytes()[:-10] + b"0123456789")
    broken = start_service(**env, BEYONDFIT_LOAD_RETRY_MAX_SECONDS="1")
    wait_for(lambda: "does not match its recorded sha256" in broken.log_text(), 60, "no check")
    assert httpx.get(f"{broken.url}/health/ready").status_code == 503


def test_a_truncated_artifact_is_refused_after_repeated_failures(
    tmp_path: Path,
    start_service: Callable[..., Service],
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> None:
    client = mlflow.MlflowClient()
    good_dir = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registered_model.name}/{registered_model.version}",
            dst_path=str(tmp_path / "good"),
        )
    )
    name = "trust-test"
    with contextlib.suppress(Exception):
        client.create_registered_model(name)
    import tests.integration.test_model_trust as trust

    good = register_dir(good_dir)
    client.set_registered_model_alias(name, "champion", good)
    svc = start_service(BEYONDFIT_MODEL_URI=f"models:/{name}@champion")
    svc.wait_ready(180)

    truncated = tmp_path / "truncated"
    shutil.copytree(good_dir, truncated)
    pickled = yaml.safe_load((truncated / "MLmodel").read_text())["flavors"]["sklearn"]
    model_file = truncated / pickled["pickled_model"]
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    assert name == trust.NAME
    bad = register_dir(truncated)
    refused_before = sample_value(scrape(svc.url), "model_reloads_total", result="refused") or 0
    client.set_registered_model_alias(name, "champion", bad)

    # each worker fails three times (BEYONDFIT_LOAD_FAILURES_BEFORE_REFUSAL), then refuses it
    wait_for(
        lambda: (
            sample_value(scrape(svc.url), "model_reloads_total", result="refused")
            == refused_before + 2
        ),
        90,
        "the truncated version was not refused",
    )
    errors = sample_value(scrape(svc.url), "model_reloads_total", result="error")
    assert errors is not None
    assert errors >= 4
    time.sleep(3)  # several reload intervals: it is not fetched again
    assert sample_value(scrape(svc.url), "model_reloads_total", result="error") == errors
    r = httpx.post(f"{svc.url}/predict", json={"instances": rows(registered_model, 1)})
    assert r.status_code == 200
    assert r.json()["model_version"] == good
    assert "failed to load 3 times" in svc.log_text()
    client.set_registered_model_alias(name, "champion", good)


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Relays to MLflow; artifact bodies come one byte at a time, 0.2 s apart."""

    protocol_version = "HTTP/1.1"
    upstream = ""

    def do_GET(self) -> None:
        with urllib.request.urlopen(self.upstream + self.path, timeout=30) as r:  # noqa: S310
            status, payload = r.status, r.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        slow = "/mlflow-artifacts/" in self.path and not self.path.endswith("/MLmodel")
        with contextlib.suppress(OSError):
            for i in range(len(payload)) if slow else []:
                self.wfile.write(payload[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)
            if not slow:
                self.wfile.write(payload)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def trickling_proxy(upstream: str) -> Iterator[str]:
    handler = type("Handler", (_Trickle,), {"upstream": upstream})
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickling_download_fails_at_the_load_deadline(
    start_service: Callable[..., Service],
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> None:
    with trickling_proxy(mlflow_server.url) as proxy:
        start = time.monotonic()
        svc = start_service(
            MLFLOW_TRACKING_URI=proxy,
            BEYONDFIT_LOAD_TIMEOUT_SECONDS="4",
            BEYONDFIT_LOAD_RETRY_MAX_SECONDS="1",
        )
        try:
            wait_for(lambda: "took longer than the load deadline" in svc.log_text(), 60, "")
        except TimeoutError:
            pytest.fail(f"the download never hit the deadline: {svc.log_text()[-3000:]}")
        took = time.monotonic() - start
        print(f"\ntrickling download abandoned {took:.1f} s after the start")
        assert httpx.get(f"{svc.url}/health").status_code == 200
        assert httpx.get(f"{svc.url}/health/ready").status_code == 503


def test_a_trickling_download_through_mlflows_client_is_abandoned_at_the_load_deadline(
    start_service: Callable[..., Service],
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> None:
    """The MLflow-client path has no per-byte deadline of ours: the whole load is bounded
    (load timeout + max(10 s, half of it)) and the worker moves on."""
    with trickling_proxy(mlflow_server.url) as proxy:
        svc = start_service(
            MLFLOW_TRACKING_URI=proxy,
            BEYONDFIT_MODEL_LOADER="mlflow",
            BEYONDFIT_LOAD_TIMEOUT_SECONDS="4",
            BEYONDFIT_LOAD_RETRY_MAX_SECONDS="1",
        )
        try:
            wait_for(lambda: "took longer than 14 s" in svc.log_text(), 90, "")
        except TimeoutError:
            pytest.fail(f"the load was never abandoned: {svc.log_text()[-3000:]}")
        assert httpx.get(f"{svc.url}/health").status_code == 200
        assert httpx.get(f"{svc.url}/health/ready").status_code == 503
