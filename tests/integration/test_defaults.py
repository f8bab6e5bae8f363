"""Defaults that keep one server from touching another, and /metrics on its own port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegisteredModel
from tests.integration.test_service import rows
from tests.support.metrics import sample_value, scrape
from tests.support.procs import Service, free_port

pytestmark = pytest.mark.slow


def test_two_servers_with_default_settings_keep_their_own_metrics(
    tmp_path: Path, start_service: Callable[..., Service], registered_model: RegisteredModel
) -> None:
    tmp_a, tmp_b = tmp_path / "tmp-a", tmp_path / "tmp-b"
    tmp_a.mkdir()
    tmp_b.mkdir()
    # PROMETHEUS_MULTIPROC_DIR empty is unset: each server makes its own directory
    a = start_service(PROMETHEUS_MULTIPROC_DIR="", TMPDIR=str(tmp_a))
    a.wait_ready(180)
    body = {"instances": rows(registered_model, 1)}
    for _ in range(5):
        assert httpx.post(f"{a.url}/predict", json=body).status_code == 200
    (dir_a,) = tmp_a.glob("beyondfit-metrics-*")
    b = start_service(PROMETHEUS_MULTIPROC_DIR="", TMPDIR=str(tmp_b))
    b.wait_ready(180)
    (dir_b,) = tmp_b.glob("beyondfit-metrics-*")
    assert dir_a != dir_b
    assert sample_value(scrape(a.url), "http_requests_total", route="/predict") == 5
    assert sample_value(scrape(b.url), "http_requests_total", route="/predict") is None
    assert Path.cwd().exists()
    a.stop()
    assert not dir_a.exists(), "the server's own metrics directory outlived it"
    assert dir_b.exists()


def test_a_set_metrics_dir_loses_only_the_service_files(
    tmp_path: Path, start_service: Callable[..., Service]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("not the service's")
    (shared / "counter_1.db").write_bytes(b"\0" * 16)
    svc = start_service(PROMETHEUS_MULTIPROC_DIR=str(shared))
    assert (shared / "notes.txt").read_text() == "not the service's"
    assert not (shared / "counter_1.db").exists()
    svc.stop()
    assert shared.exists()


def test_metrics_on_their_own_port(
    start_service: Callable[..., Service], registered_model: RegisteredModel
) -> None:
    port = free_port()
    svc = start_service(BEYONDFIT_METRICS_PORT=str(port))
    svc.wait_ready(180)
    metrics_url = f"http://127.0.0.1:{port}"
    body = {"instances": rows(registered_model, 1)}
    assert httpx.post(f"{svc.url}/predict", json=body).status_code == 200
    assert httpx.get(f"{svc.url}/metrics").status_code == 404
    assert sample_value(scrape(metrics_url), "http_requests_total", route="/predict") == 1
    assert httpx.post(f"{metrics_url}/predict", json=body).status_code == 404
    assert httpx.get(f"{metrics_url}/model").status_code == 404
