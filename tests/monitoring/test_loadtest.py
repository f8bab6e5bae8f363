"""loadtest/run.py runs locust headless against the real service in bounded time and writes a
sane report: latency quantiles, throughput, no errors, RSS samples of every worker, a verdict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.monhelpers import REPO_ROOT

pytestmark = pytest.mark.slow


def test_steady_load_report(
    start_service: Callable[..., Any], registered_model: Any, tmp_path: Path
) -> None:
    service = start_service(workers=2)
    service.wait_ready(120)
    rows = tmp_path / "rows.csv"
    registered_model.X_test.to_csv(rows, index=False)
    out = tmp_path / "report"
    # The master is found from the listening port (no --master-pid), as `make load` does.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "loadtest" / "run.py"),
            "--host",
            service.url,
            "--profile",
            "steady",
            "--duration",
            "20",
            "--users",
            "4",
            "--rate",
            "10",
            "--rows",
            str(rows),
            "--out",
            str(out),
            "--warmup",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("report.json", "rss.csv", "report.png", "locust_stats.csv"):
        assert (out / name).stat().st_size > 0, name

    report = json.loads((out / "report.json").read_text())
    assert report["master_pid"] == service.master_pid
    assert report["requests"] > 100  # 4 users x 10/s x 20 s = 800 at most
    assert report["failures"] == 0
    assert report["rps"] > 5
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 5000
    workers = {w["pid"]: w for w in report["workers"]}
    assert sorted(workers) == service.worker_pids()
    for w in workers.values():
        assert w["samples"] >= 10
        assert 20 < w["rss_start_mib"] < 4096
    assert report["leak"]["verdict"] in {"no leak", "leak suspected"}

    with open(out / "rss.csv", newline="") as f:
        sampled = {int(r["pid"]) for r in csv.DictReader(f)}
    assert set(workers) | {service.master_pid} <= sampled
