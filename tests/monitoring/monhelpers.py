"""Helpers of the monitoring tests: paths, and a real Prometheus process on a free loopback
port, stopped by its PID. (A plain module, not a conftest, so test files can import it.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RULES_DIR = REPO_ROOT / "charts" / "beyondfit" / "files" / "rules"
RULE_TESTS_DIR = Path(__file__).parent / "rules"
DASHBOARD = REPO_ROOT / "charts" / "beyondfit" / "files" / "dashboards" / "beyondfit.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run scripts/setup-monitoring.sh (make test-monitoring does)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    """A real Prometheus process; `api()` calls its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    workdir: Path
    _stopped: bool = field(default=False)

    def api(self, path: str, timeout: float = 10.0, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=timeout) as r:  # noqa: S310
                return json.loads(r.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:  # 4xx answers carry a JSON error body
            return json.loads(e.read())  # type: ignore[no-any-return]

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.api("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_prometheus(config: str, workdir: Path, timeout: float = 30.0) -> Prometheus:
    """Start Prometheus with `config` (YAML text) on a free 127.0.0.1 port; wait until ready."""
    binary = tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(config)
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=1h",
                "--web.enable-lifecycle",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prom = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log=log, workdir=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return prom
        except OSError:
            pass
        time.sleep(0.2)
    prom.stop()
    pytest.fail(f"prometheus not ready in {timeout}s:\n{log.read_text()[-3000:]}")
