"""`make demo` as a user runs it: on free ports, left running until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.procs import REPO, free_port

pytestmark = pytest.mark.slow

SCRAPE_INTERVAL_S = 2


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


def test_demo_runs_everything_with_prometheus_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    ports = {
        "MLFLOW_PORT": free_port(),
        "BEYONDFIT_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
    }
    demo_dir = tmp_path / "demo"
    env = dict(os.environ, DEMO_DIR=str(demo_dir), SCRAPE_INTERVAL=f"{SCRAPE_INTERVAL_S}s")
    env.update({k: str(v) for k, v in ports.items()})
    env.pop("MLFLOW_TRACKING_URI", None)
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 900
        while not any("Ctrl-C stops everything" in line for line in lines):
            assert demo.poll() is None, "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(0.5)
        out = "".join(lines)
        assert '"predictions"' in out
        assert '"model_version": "1"' in out
        assert "first champion" in out
        mlflow, svc, prom = (f"http://127.0.0.1:{ports[k]}" for k in ports)
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
                t["health"] == "up" and f":{ports['BEYONDFIT_PORT']}" in t["scrapeUrl"]
                for t in targets
            )

        deadline = time.monotonic() + 10 * SCRAPE_INTERVAL_S
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never scraped the service"
            time.sleep(0.5)
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        code = demo.wait(120)
        reader.join(10)

    assert code == 130, "".join(lines)[-2000:]
    assert "stopping 3 processes" in "".join(lines)
    assert not any(listening(p) for p in ports.values()), "the demo left a server running"
    assert processes_mentioning(str(demo_dir)) == []
