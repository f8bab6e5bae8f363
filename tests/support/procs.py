"""Start and stop real servers on free loopback ports; every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float, status: int = 200, proc: subprocess.Popen[bytes] | None = None
) -> float:
    """Polls url until it answers `status`; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return time.monotonic() - start
            last = r.status_code
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last!r})")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM the process group, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return int(proc.returncode)


@dataclass
class MlflowServer:
    """A real `mlflow server` with a SQLite store and a local artifact store."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    serve_artifacts: bool = True
    """False: clients read and write the artifact store themselves (no proxy)."""
    artifact_root: str | None = None
    """With serve_artifacts False: where runs store artifacts (default: a local directory)."""
    extra_args: list[str] = field(default_factory=list)
    """More `mlflow server` arguments, e.g. `--app-name basic-auth`."""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> MlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **self.extra_env)
        for credential in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.pop(credential, None)
        log = open(self.workdir / "mlflow-server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.workdir / 'mlflow.db'}",
                *(
                    [
                        "--artifacts-destination",
                        str(self.workdir / "artifacts"),
                        "--serve-artifacts",
                    ]
                    if self.serve_artifacts
                    else [
                        "--default-artifact-root",
                        self.artifact_root or str(self.workdir / "artifacts"),
                        "--no-serve-artifacts",
                    ]
                ),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120) -> float:
        return wait_http(f"{self.url}/health", timeout, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class Service:
    """The model service under real gunicorn (uvicorn workers)."""

    workdir: Path
    env: Mapping[str, str]
    workers: int = 2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / f"service-{self.port}.log"

    def start(self) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "BEYONDFIT_HOST": "127.0.0.1",
                "BEYONDFIT_PORT": str(self.port),
                "BEYONDFIT_WORKERS": str(self.workers),
                "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-{self.port}"),
            }
        )
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "python:app.gunicorn_conf", "app.main:create_app()"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        wait_http(f"{self.url}/health", 120, proc=self.proc)
        return self

    def wait_ready(self, timeout: float = 120) -> float:
        return wait_http(f"{self.url}/health/ready", timeout, proc=self.proc)

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.master_pid:
                    pids.append(int(entry))
        return sorted(pids)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        code = stop_process(self.proc, timeout)
        self.proc = None
        return code
