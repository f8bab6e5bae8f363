"""A real Prometheus (1 s scrape and rule evaluation, the unchanged rule files) scraping the
real gunicorn service (2 workers) under a short, bounded locust load.

The rule files are loaded as they are: their windows (5m, 1h, ...) work on the few seconds of
data a test has (rates need two samples), and `for:` is not shortened, so the drift run checks
that BeyondfitFeatureDrift goes *pending*; the `for:` boundaries are proven by promtool in
rules/alerts_test.yaml.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.prometheus_config import render_config
from tests.monitoring.monhelpers import DASHBOARD, REPO_ROOT, RULES_DIR, Prometheus
from tests.monitoring.test_dashboard import substitute

pytestmark = pytest.mark.slow

JOB = "beyondfit-live"  # not "beyondfit": the rules and the dashboard hard-code no job name
RUN = REPO_ROOT / "loadtest" / "run.py"


def _run_load(url: str, master_pid: int, rows: Path, out: Path, profile: str, seconds: int) -> None:
    subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--host",
            url,
            "--profile",
            profile,
            "--duration",
            str(seconds),
            "--users",
            "4",
            "--rate",
            "10",
            "--rows",
            str(rows),
            "--master-pid",
            str(master_pid),
            "--out",
            str(out),
        ],
        check=True,
        timeout=seconds + 90,
        capture_output=True,
    )


def _wait_for(prom: Prometheus, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = prom.query(expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def _alerts(prom: Prometheus, name: str) -> list[dict[str, Any]]:
    answer = prom.api("/api/v1/alerts")
    return [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == name]


@pytest.fixture
def live(
    start_service: Callable[..., Any],
    registered_model: Any,
    prometheus_factory: Callable[..., Prometheus],
    tmp_path: Path,
) -> tuple[Any, Prometheus, Path]:
    service = start_service(workers=2)
    service.wait_ready(120)
    rows = tmp_path / "rows.csv"
    registered_model.X_test.to_csv(rows, index=False)
    config = render_config([service.url.removeprefix("http://")], job=JOB, scrape_interval="1s")
    prom = prometheus_factory(config)
    assert _wait_for(prom, f'up{{job="{JOB}"}} == 1'), prom.log.read_text()[-2000:]
    return service, prom, rows


def test_steady_load_dashboard_rules_and_no_drift(
    live: tuple[Any, Prometheus, Path], tmp_path: Path
) -> None:
    service, prom, rows = live
    _run_load(service.url, service.master_pid, rows, tmp_path / "steady", "steady", 20)
    # Every recording rule has series (after a few more scrapes and rule evaluations).
    records = [
        r["record"]
        for path in sorted(RULES_DIR.glob("*.yaml"))
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    ]

    def empty() -> list[str]:
        unique = dict.fromkeys(records)
        return [r for r in unique if not prom.query(f'{{__name__="{r}",job="{JOB}"}}')]

    deadline = time.monotonic() + 60
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing == [], "recording rules without series after 60 s"

    # Every dashboard query returns data.
    board = yaml.safe_load(DASHBOARD.read_text())  # JSON is YAML
    no_data = [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if not prom.query(substitute(target["expr"], job=JOB, rate_interval="1m"))
    ]
    assert no_data == [], "dashboard queries without data"

    # Held-out rows of the training data: no drift, and no drift alert.
    psi = {r["metric"]["feature"]: float(r["value"][1]) for r in prom.query("model:feature_psi:1h")}
    assert len(psi) > 0
    assert _alerts(prom, "BeyondfitFeatureDrift") == [], sorted(psi.items(), key=lambda kv: -kv[1])[
        :5
    ]
    # The 30 features' PSI is sampling noise: well under the alert's 0.25.
    assert max(psi.values()) < 0.25, max(psi.items(), key=lambda kv: kv[1])


def test_drift_load_makes_the_drift_alert_pending(
    live: tuple[Any, Prometheus, Path], tmp_path: Path
) -> None:
    service, prom, rows = live
    _run_load(service.url, service.master_pid, rows, tmp_path / "drift", "drift", 15)
    deadline = time.monotonic() + 20
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not alerts:
        alerts = _alerts(prom, "BeyondfitFeatureDrift")
        time.sleep(1)
    assert alerts, prom.query("model:feature_psi:1h")
    assert {a["state"] for a in alerts} <= {"pending", "firing"}
    assert {a["labels"]["job"] for a in alerts} == {JOB}
    drifted = {a["labels"]["feature"] for a in alerts}
    assert len(drifted) >= 10, drifted  # every feature moved by 2 standard deviations
