"""loadtest/run.py runs locust headless against the real service in bounded time and writes a
sane report: latency quantiles, throughput, no errors, RSS samples of every worker, a verdict."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.monhelpers import REPO_ROOT
from tests.support.procs import free_port, stop_process, wait_http

pytestmark = pytest.mark.slow


def run_load(host: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "loadtest" / "run.py"), "--host", host,
         "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip


def test_spike_profile_quadruples_the_rate_and_a_leaking_worker_is_found(tmp_path: Path) -> None:
    """A real gunicorn (2 workers) serving tests/monitoring/leaky_app.py, which keeps 256 KiB
    per request: the report must say "leak suspected" for its workers, and the spike profile
    must send about 4x the rate in the middle third of the run."""
    port = free_port()
    arrivals = tmp_path / "arrivals.log"
    arrivals.touch()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(REPO_ROOT), "tests.monitoring.leaky_app:app"],
        env=dict(os.environ, LEAKY_LOG=str(arrivals)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        host = f"http://127.0.0.1:{port}"
        wait_http(f"{host}/model", timeout=30, proc=server)
        out = tmp_path / "report"
        duration = 21

        result = run_load(host, out, "--profile", "spike", "--duration", str(duration),
                          "--users", "3", "--rate", "5", "--master-pid", str(server.pid),
                          "--warmup", "3")  # fmt: skip

        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((out / "report.json").read_text())
        assert report["failures"] == 0
        assert report["leak"]["verdict"] == "leak suspected"
        assert len(report["workers"]) == 2
        assert all(w["leak"] for w in report["workers"] if w["samples"] >= 10)
        times = sorted(float(t) for t in arrivals.read_text().split())
        first = times[0]
        third = duration / 3
        before = sum(1 for t in times if t - first < third)
        during = sum(1 for t in times if third <= t - first < 2 * third)
        assert during > 2.5 * before, (before, during)  # 4x by design; locust ramps a little
    finally:
        stop_process(server)


def test_steady_load_report(
    start_service: Callable[..., Any], registered_model: Any, tmp_path: Path
) -> None:
    service = start_service(workers=2)
    service.wait_ready(120)
    rows = tmp_path / "rows.csv"
    registered_model.X_test.to_csv(rows, index=False)
    out = tmp_path / "report"
    # The master is found from the listening port (no --master-pid), as `make load` does.
    result = run_load(service.url, out, "--profile", "steady", "--duration", "20", "--users", "4",
                      "--rate", "10", "--rows", str(rows), "--warmup", "5")  # fmt: skip
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
    assert report["leak"]["verdict"] == "no leak"  # the service's RSS is flat under load
    assert not any(w["leak"] for w in workers.values())

    with open(out / "rss.csv", newline="") as f:
        sampled = {int(r["pid"]) for r in csv.DictReader(f)}
    assert set(workers) | {service.master_pid} <= sampled


def test_rows_are_typed_from_the_signature_and_drift_moves_both_kinds(tmp_path: Path) -> None:
    """The locustfile sends string columns as strings (the service refuses numbers there) and
    the drift profile gives a string column a category the model never saw."""
    rows = tmp_path / "rows.csv"
    rows.write_text("channel,basket\n10,1.0\nweb,3.0\n")
    signature = {
        "inputs": json.dumps([{"type": "string", "name": "channel"},
                              {"type": "double", "name": "basket"}])
    }  # fmt: skip
    code = (
        "import json, sys; import loadtest.locustfile as l; "
        "s = l.string_columns(json.loads(sys.argv[1])); rows = l.read_rows(sys.argv[2], s); "
        "print(json.dumps([rows, l.shift(rows, 2.0)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(signature), str(rows)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip

    typed, shifted = json.loads(done.stdout.strip().splitlines()[-1])
    assert typed == [{"channel": "10", "basket": 1.0}, {"channel": "web", "basket": 3.0}]
    assert shifted == [
        {"channel": "drift:10", "basket": 3.0},  # +2 standard deviations (1.0)
        {"channel": "drift:web", "basket": 5.0},
    ]
