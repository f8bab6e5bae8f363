"""Fixtures for the image tests: the images built once per session with podman (runc), and
containers that are always removed at teardown.

`bash scripts/test.sh images` runs scripts/setup-images.sh first (podman, runc, the
debootstrap stand-in base image). Building goes through scripts/build-images.sh, exactly as
`make image` does; warm builds reuse the cached layers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNC = "/usr/sbin/runc"


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """podman with the flags this machine needs (PLATFORM.md): runc, explicit rlimits on run."""
    exe = shutil.which("podman")
    if not exe:
        pytest.fail("podman is not installed: run scripts/setup-images.sh", pytrace=False)
    cmd = [exe]
    if os.path.exists(RUNC):
        cmd += ["--runtime", RUNC]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chart_app_version() -> str:
    for line in (REPO / "charts" / "beyondfit" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("no appVersion in charts/beyondfit/Chart.yaml")


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass(frozen=True)
class GitState:
    head: str  # `git rev-parse HEAD`
    dirty: bool  # `git status --porcelain` lists anything


def git_state() -> GitState:
    return GitState(git("rev-parse", "HEAD"), bool(git("status", "--porcelain")))


@dataclass(frozen=True)
class Images:
    service: str
    mlflow: str
    build_seconds: float
    sizes: dict[str, int]
    # The checkout just before and just after the build: others may commit or edit meanwhile,
    # and the build script reads its revision somewhere in between.
    git_before: GitState
    git_after: GitState
    version: str  # the tag and version label scripts/build-images.sh uses


def build_images(
    which: str, env: dict[str, str] | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """scripts/build-images.sh WHICH (all, service or mlflow), finished."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "build-images.sh"), which],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


@pytest.fixture(scope="session")
def images() -> Images:
    """Both images, built by scripts/build-images.sh (the stand-in base when no registry)."""
    before = git_state()
    t0 = time.monotonic()
    proc = build_images("all")
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    build_seconds = time.monotonic() - t0
    after = git_state()
    version = os.environ.get("BEYONDFIT_IMAGE_TAG") or chart_app_version()
    service, mlflow = f"localhost/beyondfit:{version}", f"localhost/beyondfit-mlflow:{version}"
    sizes = {
        name: int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
        for name in (service, mlflow)
    }
    return Images(service, mlflow, build_seconds, sizes, before, after, version)


@dataclass
class Container:
    name: str
    port: int
    logs_on_failure: list[str] = field(default_factory=list)

    def inspect(self) -> dict[str, Any]:
        return json.loads(podman("inspect", self.name).stdout)[0]

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def exec(self, *cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=check)


@pytest.fixture
def run_container() -> Iterator[Callable[..., Container]]:
    """Factory: run_container(image, port, env={...}, extra=[...], cmd=[...]) -> a detached
    container on the host network, read-only root. Every container is removed at teardown."""
    started: list[Container] = []

    def run(
        image: str,
        port: int,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        cmd: list[str] | None = None,
    ) -> Container:
        name = f"bf-test-{uuid.uuid4().hex[:10]}"
        args = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
        ]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        args += list(extra or [])
        args.append(image)
        args += list(cmd or [])
        podman(*args)
        c = Container(name, port)
        started.append(c)
        return c

    yield run
    for c in started:
        podman("rm", "--force", "--time", "5", c.name, check=False, timeout=60)


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.5, what: str = ""
) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def save_tiny_model(path: Path) -> tuple[Any, Any]:
    """A small logistic regression on 3 random features, saved as an MLflow model directory at
    `path` (skops); returns (model, X) to compare predictions after a round trip."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn", "skops"])
    return model, X
