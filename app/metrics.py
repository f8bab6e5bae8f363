"""The metric contract of DESIGN.md, exact across gunicorn workers.

Import this module only after PROMETHEUS_MULTIPROC_DIR is set (the gunicorn config does it
first): prometheus_client picks its storage when it is imported.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))

MASTER_PID_ENV = "BEYONDFIT_GUNICORN_MASTER_PID"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """All metrics of one app. In multiprocess mode the values live in the shared directory and
    the registry below only serves single-process runs (tests, `uvicorn app.main:...`)."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # multiprocess mode has no _created series; keep both alike
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "model_inference_duration_seconds",
            "Time spent inside the model for one request.",
            ["model_version"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "model_predictions",
            "Rows predicted, by predicted class.",
            ["model_version", "predicted_class"],
            registry=r,
        )
        self.prediction_score = Histogram(
            "model_prediction_score",
            "Positive-class probability of each row (highest class probability for multiclass).",
            ["model_version"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.feature_bin = Counter(
            "model_feature_bin",
            "Live input values counted in the training reference bins.",
            ["feature", "bin"],
            registry=r,
        )
        self.feature_reference_ratio = Gauge(
            "model_feature_reference_ratio",
            "Share of the training rows in each reference bin.",
            ["feature", "bin"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_info = Gauge(
            "model_info",
            "The model in service (1) and models served before (0).",
            ["name", "version", "alias", "run_id"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_loaded = Gauge(
            "model_loaded",
            "1 while every live worker has a model loaded.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_reloads = Counter(
            "model_reloads",
            "Attempts to load a new model version, by result.",
            ["result"],
            registry=r,
        )

    def start_worker(self) -> None:
        """Per-process initial values, set in each worker once it runs (never in the gunicorn
        master, whose values would otherwise count as a live worker's)."""
        for result in ("success", "refused", "error"):
            self.model_reloads.labels(result)
        self.model_loaded.set(0)

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics body: all workers' values plus per-process memory and CPU."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = self.registry
        body = generate_latest(registry) + generate_latest(_process_registry())
        return body, CONTENT_TYPE_LATEST


class FeatureBinCounter:
    """Counts live rows into the reference bins of one model version, with the labelled
    children looked up once per model instead of once per request.

    A numeric feature's bins are quantile ``edges``; a string feature's are its training
    ``categories`` plus a last "other" bin for every value outside them (see
    ``training/reference.py``, which writes both).
    """

    def __init__(
        self,
        metrics: Metrics,
        bins: dict[str, dict[str, list[Any]]],
        feature_names: Sequence[str],
    ) -> None:
        self._numeric: list[tuple[int, np.ndarray, list[Counter]]] = []
        self._categorical: list[tuple[int, dict[str, int], list[Counter]]] = []
        for column, name in enumerate(feature_names):
            spec = bins.get(name)
            if spec is None:
                continue
            ratios = spec["ratios"]
            children = [metrics.feature_bin.labels(name, str(b)) for b in range(len(ratios))]
            for b, ratio in enumerate(ratios):
                metrics.feature_reference_ratio.labels(name, str(b)).set(float(ratio))
            if "categories" in spec:
                position = {str(c): i for i, c in enumerate(spec["categories"])}
                self._categorical.append((column, position, children))
            else:
                edges = np.asarray(spec["edges"], dtype=float)
                self._numeric.append((column, edges, children))

    def count(self, rows: np.ndarray | pd.DataFrame) -> None:
        frame = rows if isinstance(rows, pd.DataFrame) else None
        for column, edges, children in self._numeric:
            values = rows[:, column] if frame is None else frame.iloc[:, column].to_numpy()
            if values.dtype.kind not in "biuf":
                continue  # numeric bins, but the model takes this column as strings
            idx = np.searchsorted(edges, values, side="right")
            if len(idx) == 1:
                children[int(idx[0])].inc()
                continue
            for b, n in enumerate(np.bincount(idx, minlength=len(children))):
                if n:
                    children[b].inc(int(n))
        for column, position, children in self._categorical:
            values = rows[:, column] if frame is None else frame.iloc[:, column].to_numpy()
            other = len(children) - 1
            if len(values) == 1:
                children[position.get(str(values[0]), other)].inc()
                continue
            for value, n in collections.Counter(str(v) for v in values).items():
                children[position.get(value, other)].inc(n)


class _ProcessCollector(Collector):
    """Memory and CPU of the gunicorn master and every worker, read from /proc, labelled by
    pid and role. (prometheus_client's own process metrics do not work in multiprocess mode.)"""

    def collect(self) -> Iterable[Metric]:
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of each server process.",
            labels=["pid", "role"],
        )
        cpu = CounterMetricFamily(
            "process_cpu_seconds",
            "User and system CPU time of each server process.",
            labels=["pid", "role"],
        )
        for pid, role in _server_processes():
            stat = _read_stat(pid)
            if stat is None:
                continue
            ticks, pages = stat
            rss.add_metric([str(pid), role], float(pages * _PAGE_SIZE))
            cpu.add_metric([str(pid), role], ticks / _CLK_TCK)
        yield rss
        yield cpu


class _MetricsDirCollector(Collector):
    """Bytes in the multiprocess directory (apparent file sizes): it lives on a small tmpfs,
    and a full one kills the workers that write to it (SIGBUS)."""

    def collect(self) -> Iterable[Metric]:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return
        total = 0
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        size = GaugeMetricFamily(
            "beyondfit_metrics_dir_bytes",
            "Bytes of the prometheus_client multiprocess files of this server.",
        )
        size.add_metric([], float(total))
        yield size


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessCollector())
    registry.register(_MetricsDirCollector())
    return registry


def _server_processes() -> Iterator[tuple[int, str]]:
    master = os.environ.get(MASTER_PID_ENV)
    if not master or not master.isdigit():
        yield os.getpid(), "worker"
        return
    master_pid = int(master)
    yield master_pid, "master"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # fields[1] is the parent pid
            yield int(entry), "worker"


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime in clock ticks, resident pages) of one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is fields[0]; utime, stime are stat fields 14, 15 and
    # rss is field 24 (1-based, counting pid and comm), i.e. fields[11], [12] and [21] here.
    return int(fields[11]) + int(fields[12]), int(fields[21])
