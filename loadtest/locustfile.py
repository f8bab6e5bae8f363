"""Locust load for the beyondfit service: profiles steady, spike and drift.

Run through loadtest/run.py (it samples the workers' memory and writes the report), or by hand:

    BEYONDFIT_LOAD_PROFILE=drift BEYONDFIT_LOAD_ROWS=rows.csv \\
        locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 -u 4 -t 60s

Environment:
  BEYONDFIT_LOAD_PROFILE  steady (default): constant users, each at a constant request rate;
                          spike: the users' rate x4 in the middle third of the run;
                          drift: like steady, with every numeric feature shifted by +2
                          standard deviations and every string feature replaced by a value
                          never seen in training, so the PSI of every feature is large and
                          BeyondfitFeatureDrift goes pending then firing.
  BEYONDFIT_LOAD_ROWS     CSV with a header of feature names: the rows to send (e.g. the
                          held-out split). Without it, the rows of the service's input
                          example (GET /model) are used.
  BEYONDFIT_LOAD_RATE     requests per second per user (default 10).
  BEYONDFIT_LOAD_SEED     random seed (default 0); user i draws rows with seed + i.

The column types come from the model's signature (GET /model): string columns are sent as
strings, every other column as a number.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import statistics
import time
import urllib.request
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

Row = dict[str, float | str]
ROWS: list[Row] = []
_START = time.monotonic()
_USERS = itertools.count()
#: Prefix of the unseen category the drift profile puts in every string column.
DRIFT_CATEGORY = "drift:"


def string_columns(signature: dict[str, Any] | None) -> set[str]:
    """Names of the string columns of an MLflow signature as GET /model returns it."""
    inputs = (signature or {}).get("inputs") or "[]"
    columns = json.loads(inputs) if isinstance(inputs, str) else inputs
    return {c["name"] for c in columns if c.get("type") == "string" and "name" in c}


def typed(row: dict[str, Any], strings: set[str]) -> Row:
    return {k: str(v) if k in strings else float(v) for k, v in row.items()}


def read_rows(path: str, strings: set[str]) -> list[Row]:
    with open(path, newline="") as f:
        return [typed(row, strings) for row in csv.DictReader(f)]


def shift(rows: list[Row], sigmas: float) -> list[Row]:
    """Numeric features moved by ``sigmas`` of their standard deviation over ``rows``; string
    features replaced by a category the model never saw (its "other" reference bin)."""
    names = list(rows[0])
    numeric = [n for n in names if not isinstance(rows[0][n], str)]
    std = {n: statistics.pstdev(float(r[n]) for r in rows) or 1.0 for n in numeric}
    return [
        {n: float(r[n]) + sigmas * std[n] if n in std else f"{DRIFT_CATEGORY}{r[n]}" for n in names}
        for r in rows
    ]


@events.test_start.add_listener
def load_rows(environment: Any, **_: Any) -> None:
    global _START
    with urllib.request.urlopen(f"{environment.host}/model", timeout=30) as r:  # noqa: S310
        model = json.loads(r.read())
    strings = string_columns(model.get("signature"))
    rows = read_rows(ROWS_CSV, strings) if ROWS_CSV else []
    if not rows:
        rows = [typed(row, strings) for row in model["input_example"]]
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
        self.random = random.Random(SEED + next(_USERS))

    @task
    def predict(self) -> None:
        row = self.random.choice(ROWS)
        with self.client.post(
            "/predict", json={"instances": [row]}, name="/predict", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
