"""Fixtures of the monitoring layer: promtool, and real Prometheus processes on free loopback
ports (stopped by PID). scripts/setup-monitoring.sh installs Prometheus; `make
test-monitoring` runs it first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.monitoring.monhelpers import Prometheus, start_prometheus, tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """start(config_text, name="prom") -> Prometheus; all are stopped by PID at the end."""
    started: list[Prometheus] = []

    def start(config: str, name: str = "prom") -> Prometheus:
        prom = start_prometheus(config, tmp_path / name)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus with no targets and no rules: a PromQL parser behind an HTTP API."""
    prom = start_prometheus(
        "global:\n  scrape_interval: 15s\n", tmp_path_factory.mktemp("empty-prometheus")
    )
    yield prom
    prom.stop()
