"""`make demo` as a user runs it, in its one-shot mode on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import REPO, free_port

pytestmark = pytest.mark.slow


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_trains_serves_predicts_and_stops_everything(tmp_path: Path) -> None:
    ports = {
        "MLFLOW_PORT": free_port(),
        "BEYONDFIT_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
    }
    env = dict(os.environ, DEMO_ONESHOT="1", DEMO_DIR=str(tmp_path / "demo"))
    env.update({k: str(v) for k, v in ports.items()})
    env.pop("MLFLOW_TRACKING_URI", None)
    run = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert '"predictions"' in out
    assert '"model_version": "1"' in out
    assert "first champion" in out
    assert f"http://127.0.0.1:{ports['BEYONDFIT_PORT']}/docs" in out
    assert (tmp_path / "demo" / "prometheus.yml").exists()
    assert not any(listening(p) for p in ports.values()), "the demo left a server running"
