"""Locust load for the beyondfit service: profiles steady, spike and drift.

Run through loadtest/run.py (it samples the workers' memory and writes the report), or by hand:

    BEYONDFIT_LOAD_PROFILE=drift BEYONDFIT_LOAD_ROWS=rows.csv \\
        locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 -u 4 -t 60s

Environment:
  BEYONDFIT_LOAD_PROFILE  steady (default): constant users, each at a constant request rate;
                          spike: the users' rate x4 in the middle third of the run;
                          drift: like steady, with every feature shifted by +2 standard
                          deviations, so the PSI of every feature is large and
                          BeyondfitFeatureDrift goes pending then firing.
  BEYONDFIT_LOAD_ROWS     CSV with a header of feature names: the rows to send (e.g. the
                          held-out split). Without it, the rows of the service's input
                          example (GET /model) are used.
  BEYONDFIT_LOAD_RATE     requests per second per user (default 10).
  BEYONDFIT_LOAD_SEED     random seed (default 0).
"""

from __future__ import annotations

import csv
import os
import random
import statistics
import time
from typing import Any

from locust import HttpUser, constant_throughput, events, task

PROFILE = os.environ.get("BEYONDFIT_LOAD_PROFILE", "steady")
ROWS_CSV = os.environ.get("BEYONDFIT_LOAD_ROWS", "")
RATE = float(os.environ.get("BEYONDFIT_LOAD_RATE", "10"))
SEED = int(os.environ.get("BEYONDFIT_LOAD_SEED", "0"))
SPIKE_FACTOR = 4
DRIFT_SIGMAS = 2.0

if PROFILE not in {"steady", "spike", "drift"}:
    raise SystemExit(f"unknown BEYONDFIT_LOAD_PROFILE {PROFILE!r}: steady, spike or drift")

ROWS: list[dict[str, float]] = []
_START = time.monotonic()


def read_rows(path: str) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def shift(rows: list[dict[str, float]], sigmas: float) -> list[dict[str, float]]:
    """Every feature moved by `sigmas` of its standard deviation over `rows`."""
    names = list(rows[0])
    std = {n: statistics.pstdev(r[n] for r in rows) or 1.0 for n in names}
    return [{n: r[n] + sigmas * std[n] for n in names} for r in rows]


@events.test_start.add_listener
def load_rows(environment: Any, **_: Any) -> None:
    global _START
    rows = read_rows(ROWS_CSV) if ROWS_CSV else []
    if not rows:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{environment.host}/model", timeout=30) as r:  # noqa: S310
            rows = [
                {k: float(v) for k, v in row.items()}
                for row in json.loads(r.read())["input_example"]
            ]
    if PROFILE == "drift":
        rows = shift(rows, DRIFT_SIGMAS)
    ROWS[:] = rows
    _START = time.monotonic()


def _rate() -> float:
    """Requests per second for one user now; the spike profile quadruples it mid-run."""
    if PROFILE != "spike":
        return RATE
    duration = float(os.environ.get("BEYONDFIT_LOAD_DURATION", "60"))
    elapsed = time.monotonic() - _START
    return RATE * SPIKE_FACTOR if duration / 3 <= elapsed < 2 * duration / 3 else RATE


class ModelUser(HttpUser):
    """One client sending single-row /predict requests at a constant rate."""

    def wait_time(self) -> float:
        return constant_throughput(_rate())(self)  # type: ignore[no-any-return]

    def on_start(self) -> None:
        self.random = random.Random(SEED + id(self))

    @task
    def predict(self) -> None:
        row = self.random.choice(ROWS)
        with self.client.post(
            "/predict", json={"instances": [row]}, name="/predict", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
