"""Gunicorn settings for the service, from the same BEYONDFIT_* environment as the app.

Prometheus multiprocess mode: the shared directory is set before prometheus_client is
imported anywhere, emptied of this service's files when the master starts, and a dead
worker's live gauges are dropped in child_exit so counters stay exact across restarts.
Without PROMETHEUS_MULTIPROC_DIR each server gets a directory of its own (removed at exit):
two servers on one host never share, or empty, each other's metrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.logs import logging_config
from app.settings import Settings

#: What the service writes in the multiprocess directory: prometheus_client's files and the
#: readiness and drain markers. Only these are removed at start, so a directory set by
#: mistake to a shared place ($HOME, /) loses nothing else.
_OWN_FILES = ("*.db", "model-loaded", "loading-*", "draining")

_settings = Settings()
_own_dir = _settings.prometheus_multiproc_dir is None
_multiproc = _settings.prometheus_multiproc_dir or Path(
    tempfile.mkdtemp(prefix="beyondfit-metrics-")
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_multiproc)
# This module is read once, by the master, before the app is imported: a clean directory for
# this server's life, and the master's pid for the per-process metrics.
_multiproc.mkdir(parents=True, exist_ok=True)
for _pattern in _OWN_FILES:
    for _stale in _multiproc.glob(_pattern):
        _stale.unlink(missing_ok=True)
os.environ["BEYONDFIT_GUNICORN_MASTER_PID"] = str(os.getpid())

bind = [f"{_settings.host}:{_settings.port}"]
if _settings.metrics_port is not None:
    bind.append(f"{_settings.host}:{_settings.metrics_port}")
workers = _settings.workers
worker_class = "app.worker.BalancedUvicornWorker"
graceful_timeout = _settings.graceful_timeout
# A replacement worker loads its model before it heartbeats; leave room for that.
timeout = int(_settings.replacement_load_timeout_seconds) + 30
keepalive = 5
# Imports (MLflow, scikit-learn) happen once in the master and are shared by the workers;
# each worker still loads its own model in the app's lifespan.
preload_app = True
accesslog = None
# gunicorn's control socket defaults to one path under $HOME: several servers on one host
# would share it, and a read-only root filesystem cannot hold it.
control_socket_disable = True
logconfig_dict = logging_config(_settings.log_level)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def when_ready(server: Any) -> None:
    # Building the app in the master (preload_app) created metric values under the master's
    # pid; the master serves nothing, so its live gauges must not count as a worker's.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _own_dir:
        shutil.rmtree(_multiproc, ignore_errors=True)
