"""`make demo` as a user runs it: on free ports, left running until it is stopped.

Two ways to stop it, each of which must stop every server it started and end cleanly:
Ctrl-C in the terminal (SIGINT to the foreground process group, here `make` and the script)
and SIGTERM to the script alone. The servers run in sessions of their own, so neither signal
reaches them directly: only the script's cleanup can stop them, and these tests fail if it
does not.

The children start with SIGINT and SIGTERM at their defaults whatever this test process
inherited: a non-interactive bash cannot trap a signal that was ignored when it started, and
a suite launched in the background of a script inherits SIGINT ignored.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import REPO, free_port

pytestmark = pytest.mark.slow

SCRAPE_INTERVAL_S = 2
STARTED = "Ctrl-C stops everything"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    demo_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", "".join(self.lines))  # without log colours

    def server_pids(self) -> dict[str, int]:
        """The servers the script reported starting ("NAME: pid N, log ...")."""
        return {m[1]: int(m[2]) for m in re.finditer(r"\] (\w+): pid (\d+), log", self.output)}

    def wait_started(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while STARTED not in self.output:
            assert self.proc.poll() is None, f"the demo exited early:\n{self.output[-4000:]}"
            assert time.monotonic() < deadline, f"no '{STARTED}' in {timeout} s:\n{self.output}"
            time.sleep(0.5)

    def stop(self, sig: signal.Signals, group: bool) -> int:
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(120)


@contextmanager
def running_demo(argv: list[str], tmp_path: Path) -> Iterator[Demo]:
    ports = {
        "MLFLOW_PORT": free_port(),
        "BEYONDFIT_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
    }
    demo_dir = tmp_path / "demo"
    env = dict(os.environ, DEMO_DIR=str(demo_dir), SCRAPE_INTERVAL=f"{SCRAPE_INTERVAL_S}s")
    env.update({k: str(v) for k, v in ports.items()})
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
        preexec_fn=_default_signals,
    )
    demo = Demo(proc, ports, demo_dir)
    reader = threading.Thread(target=lambda: demo.lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        yield demo
    finally:
        if proc.poll() is None:  # the test failed before stopping it: stop everything
            for pid in demo.server_pids().values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        reader.join(10)


def assert_nothing_left(demo: Demo, pids: dict[str, int]) -> None:
    assert sorted(pids) == ["MLflow", "Prometheus", "service"], demo.output[-2000:]
    assert [name for name, pid in pids.items() if alive(pid)] == [], "a server outlived the demo"
    assert not any(listening(p) for p in demo.ports.values()), "the demo left a port open"
    assert processes_mentioning(str(demo.demo_dir)) == []


def test_make_demo_runs_everything_with_prometheus_and_ctrl_c_stops_it_all(
    tmp_path: Path,
) -> None:
    with running_demo(["make", "--no-print-directory", "demo"], tmp_path) as demo:
        demo.wait_started()
        out = demo.output
        assert '"predictions"' in out
        assert '"model_version": "1"' in out
        assert "first champion" in out
        mlflow, svc, prom = (f"http://127.0.0.1:{demo.ports[k]}" for k in demo.ports)
        for url in (mlflow, f"{svc}/docs", f"{svc}/metrics", prom):
            assert url in out, url  # printed for the user ...
            answer = httpx.get(url, timeout=10, follow_redirects=True)
            assert answer.status_code == 200, url  # ... and answering

        # Prometheus: the chart's rules loaded, the configured interval, the service scraped
        groups = httpx.get(f"{prom}/api/v1/rules").json()["data"]["groups"]
        rules = {r["name"] for g in groups for r in g["rules"]}
        assert "BeyondfitFeatureDrift" in rules
        assert "model:feature_psi:1h" in rules
        config = httpx.get(f"{prom}/api/v1/status/config").json()["data"]["yaml"]
        assert f"scrape_interval: {SCRAPE_INTERVAL_S}s" in config

        def scraped() -> bool:
            targets = httpx.get(f"{prom}/api/v1/targets").json()["data"]["activeTargets"]
            return any(
                t["health"] == "up" and f":{demo.ports['BEYONDFIT_PORT']}" in t["scrapeUrl"]
                for t in targets
            )

        deadline = time.monotonic() + 10 * SCRAPE_INTERVAL_S
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never scraped the service"
            time.sleep(0.5)

        pids = demo.server_pids()
        # Ctrl-C: the terminal signals the foreground group, make and the script
        code = demo.stop(signal.SIGINT, group=True)

    out = demo.output
    # make passes the interrupt on by dying of it (-SIGINT), without an error of its own
    assert code == -signal.SIGINT, out[-2000:]
    assert "stopping 3 processes" in out, out[-2000:]
    assert "] stopped" in out, out[-2000:]
    assert "error" not in out.split(STARTED)[1].lower(), out[-2000:]
    assert_nothing_left(demo, pids)


def test_demo_stops_everything_on_sigterm_to_the_script_alone(tmp_path: Path) -> None:
    with running_demo(["bash", "scripts/demo.sh"], tmp_path) as demo:
        demo.wait_started()
        pids = demo.server_pids()
        assert all(alive(pid) for pid in pids.values()), pids
        code = demo.stop(signal.SIGTERM, group=False)
    assert code == 0, demo.output[-2000:]
    assert "stopping 3 processes" in demo.output, demo.output[-2000:]
    assert_nothing_left(demo, pids)
