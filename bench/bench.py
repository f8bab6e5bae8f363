"""Side-by-side serving benchmark: beyondfit (gunicorn, 2 workers) vs `mlflow models serve`.

    bench/run.sh            # full run, about 13 minutes (budget 15)
    bench/run.sh --quick    # smoke run, about 3-5 minutes
    .venv/bin/python bench/bench.py --help

One MLflow tracking server, one training run (beyondfit-classifier@champion), then on this
machine, every server on a free 127.0.0.1 port:

* readiness: time from process start to the first 200 of /health/ready (beyondfit) or /ping
  (mlflow models serve), against an in-process `mlflow.pyfunc.load_model` in a fresh
  interpreter (import and load timed apart); repeated and interleaved, medians reported;
* throughput: wrk (one thread, closed loop, keep-alive) sends one single-row prediction body
  over 1, 8 and 64 connections to each target. Repetitions are interleaved: round r, at each
  concurrency, runs every target once, in an order rotated per round, so a busy moment of the
  machine hits every target alike. Per cell: rps, p50/p95/p99 (wrk), errors (socket errors +
  HTTP >= 400), CPU seconds per request summed over every process of the server's session
  (utime+stime of /proc/PID/stat before/after; the load generator is not in that session),
  RSS and PSS of each server process, the load generator's own CPU, the host's load average.

Results: bench/results/<timestamp>/results.json + summary.md; bench/results/latest.md is a copy
of the newest summary. Raw per-cell outputs and server logs: bench/results/raw/<timestamp>/
(gitignored). Every server is stopped by its process group at the end, also on error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.support.procs import (  # noqa: E402
    VENV_BIN,
    MlflowServer,
    Service,
    free_port,
    stop_process,
    wait_http,
)

MODEL_NAME = "beyondfit-classifier"
MODEL_URI = f"models:/{MODEL_NAME}@champion"
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------- processes


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (the servers start in their own session,
    so this is the server's whole process tree: master/CLI, workers, helpers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session
            pids.append(int(entry))
    return sorted(pids)


def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)


def cpu_snapshot(sid: int) -> dict[int, int]:
    return {p: t for p in session_pids(sid) if (t := cpu_ticks(p)) is not None}


def cpu_delta_seconds(before: dict[int, int], after: dict[int, int]) -> dict[int, float]:
    """Per-process CPU seconds between two snapshots (a process born in between counts
    from zero)."""
    return {p: (t - before.get(p, 0)) / CLK_TCK for p, t in after.items()}


def proc_name(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in args if a]
    text = " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words))
    return text[:120]


def memory(pid: int) -> dict[str, float] | None:
    """RSS and PSS in MiB (PSS shares the forked workers' common pages fairly)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mib"] = int(line.split()[1]) / 1024
    except OSError:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_mib"] = int(line.split()[1]) / 1024
    return out


def host_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One thing wrk loads: a server (by session id) and an endpoint with its body."""

    name: str
    kind: str  # "beyondfit" | "mlflow"
    url: str
    sid: int
    body: bytes
    path: str
    lua: Path | None = None
    description: str = ""


@dataclass
class MlflowServe:
    """`mlflow models serve` of the registered model, in its own session."""

    workdir: Path
    tracking_uri: str
    workers: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServe:
        env = dict(os.environ, MLFLOW_TRACKING_URI=self.tracking_uri)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"  # it execs `uvicorn` from PATH
        log = open(self.workdir / f"mlflow-serve-w{self.workers}-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                MODEL_URI,
                "-w",
                str(self.workers),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 180) -> float:
        return wait_http(f"{self.url}/ping", timeout, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


LUA = """-- generated by bench/bench.py: one POST body, results as one JSON line
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,'
    .. '"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,'
    .. '"p90_us":%.0f,"p95_us":%.0f,"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
"""


def write_lua(target: Target, raw: Path) -> None:
    path = raw / f"{target.name}.lua"
    path.write_text(LUA.format(body=target.body.decode()))
    target.lua = path


def run_wrk(
    target: Target, connections: int, seconds: float, timeout_s: float = 10
) -> tuple[dict[str, Any], float, str]:
    """One wrk run; returns (wrk's JSON line, wrk's own CPU seconds, its full output)."""
    assert target.lua is not None
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={int(timeout_s)}s",
        "-s",
        str(target.lua),
        target.url + target.path,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = done.stdout + done.stderr
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {output[-2000:]}")
    return json.loads(line[len("BENCH_JSON ") :]), wrk_cpu, output


# --------------------------------------------------------------------------- readiness

LOAD_SCRIPT = """
import json, sys, time
spawned = float(sys.argv[2])
t0 = time.perf_counter(); started = time.time()
import mlflow, mlflow.pyfunc
t1 = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[1])
t2 = time.perf_counter()
print("LOAD_JSON " + json.dumps({"interpreter_start_s": started - spawned,
      "import_s": t1 - t0, "load_s": t2 - t1, "process_to_loaded_s": time.time() - spawned}))
"""


def inprocess_load(tracking_uri: str) -> dict[str, float]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    spawned = time.time()
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", LOAD_SCRIPT, MODEL_URI, repr(spawned)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOAD_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"in-process load failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(line[len("LOAD_JSON ") :])
    return result


def beyondfit_env(tracking_uri: str, access_log: bool) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BEYONDFIT_MODEL_URI": MODEL_URI,
        "BEYONDFIT_ENABLE_CONSTANT_ENDPOINT": "true",
        "BEYONDFIT_ACCESS_LOG": "true" if access_log else "false",
    }


def measure_readiness(
    workdir: Path, tracking_uri: str, reps: int, deadline: float
) -> dict[str, list[dict[str, float]]]:
    """`reps` interleaved rounds of: in-process load, beyondfit cold start (default direct
    loader, then BEYONDFIT_MODEL_LOADER=mlflow), mlflow serve -w 2 cold start (order rotated
    per round). Each server is stopped before the next starts."""
    out: dict[str, list[dict[str, float]]] = {
        "inprocess": [],
        "beyondfit": [],
        "beyondfit_mlflow_loader": [],
        "mlflow_w2": [],
    }
    kinds = list(out)
    for r in range(reps):
        if r > 0 and time.monotonic() > deadline:  # the first round always runs
            print(f"  readiness: time budget reached after {r} round(s)", flush=True)
            break
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            if kind == "inprocess":
                res = inprocess_load(tracking_uri)
            elif kind.startswith("beyondfit"):
                env = beyondfit_env(tracking_uri, True)
                if kind == "beyondfit_mlflow_loader":
                    env["BEYONDFIT_MODEL_LOADER"] = "mlflow"
                service = Service(workdir, env, workers=2)
                t0 = time.monotonic()
                try:
                    service.start()  # returns at the first 200 of /health
                    alive = time.monotonic() - t0
                    service.wait_ready(180)
                    res = {"alive_s": alive, "ready_s": time.monotonic() - t0}
                finally:
                    service.stop()
            else:
                serve = MlflowServe(workdir, tracking_uri, workers=2)
                t0 = time.monotonic()
                try:
                    serve.start()
                    serve.wait_ready(180)
                    res = {"ready_s": time.monotonic() - t0}
                finally:
                    serve.stop()
            out[kind].append(res)
            print(f"  readiness round {r + 1} {kind}: {fmt_dict(res)}", flush=True)
    return out


# --------------------------------------------------------------------------- helpers


def fmt_dict(d: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}" for k, v in d.items())


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def verify_prediction(target: Target, expected: int | None) -> int:
    """One request with httpx: must be 200 and, for predict targets, agree with the others."""
    r = httpx.post(
        target.url + target.path,
        content=target.body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    if r.status_code != 200:
        raise RuntimeError(f"{target.name}: {r.status_code} {r.text[:500]}")
    body = r.json()
    pred = body["predictions"][0]
    label = int(pred if not isinstance(pred, dict) else next(iter(pred.values())))
    if expected is not None and "constant" not in target.name and label != expected:
        raise RuntimeError(f"{target.name} predicted {label}, expected {expected}")
    return label


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions: dict[str, str | None] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "scikit-learn", "fastapi", "uvicorn", "gunicorn", "uvicorn-worker"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    versions["wrk"] = (wrk.stdout + wrk.stderr).split("\n")[0].split(" [")[0]
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "app", "bench"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git": sha + (" (app/ or bench/ modified)" if dirty else ""),
    }


# --------------------------------------------------------------------------- the run


def build_targets(
    tracking_uri: str,
    workdir: Path,
    raw: Path,
    row: dict[str, float],
    columns: list[str],
    with_nolog: bool,
) -> tuple[list[Target], list[Any]]:
    """Starts the servers under test (all at once; they idle while another is loaded)."""
    servers: list[Any] = []
    bf_predict = json.dumps({"instances": [row]}).encode()
    bf_const = bf_predict  # same bytes on the wire: the floor differs only in the work done
    ml_body = json.dumps(
        {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns]]}}
    ).encode()

    targets: list[Target] = []
    bf = Service(workdir, beyondfit_env(tracking_uri, True), workers=2)
    servers.append(bf)
    bf.start()
    bf_nolog = None
    if with_nolog:
        bf_nolog = Service(workdir, beyondfit_env(tracking_uri, False), workers=2)
        servers.append(bf_nolog)
        bf_nolog.start()
    ml1 = MlflowServe(workdir, tracking_uri, workers=1)
    ml2 = MlflowServe(workdir, tracking_uri, workers=2)
    servers += [ml1, ml2]
    ml1.start()
    ml2.start()
    bf.wait_ready(180)
    if bf_nolog is not None:
        bf_nolog.wait_ready(180)
    ml1.wait_ready(180)
    ml2.wait_ready(180)

    def add(name: str, kind: str, url: str, sid: int, body: bytes, path: str, desc: str) -> None:
        t = Target(name, kind, url, sid, body, path, description=desc)
        write_lua(t, raw)
        targets.append(t)

    add(
        "beyondfit-predict",
        "beyondfit",
        bf.url,
        bf.master_pid,
        bf_predict,
        "/predict",
        "POST /predict, gunicorn 2 workers, access log on",
    )
    add(
        "beyondfit-constant",
        "beyondfit",
        bf.url,
        bf.master_pid,
        bf_const,
        "/bench/constant",
        "POST /bench/constant on the same server (framework floor: middleware, metrics, no model)",
    )
    if bf_nolog is not None:
        add(
            "beyondfit-predict-nolog",
            "beyondfit",
            bf_nolog.url,
            bf_nolog.master_pid,
            bf_predict,
            "/predict",
            "POST /predict, gunicorn 2 workers, BEYONDFIT_ACCESS_LOG=false",
        )
    for ml in (ml1, ml2):
        assert ml.proc is not None
        add(
            f"mlflow-w{ml.workers}",
            "mlflow",
            ml.url,
            ml.proc.pid,
            ml_body,
            "/invocations",
            f"mlflow models serve -w {ml.workers} (uvicorn), POST /invocations dataframe_split",
        )
    return targets, servers


def run_cells(
    targets: list[Target],
    connections: list[int],
    rounds: int,
    seconds: float,
    warmup: float,
    raw: Path,
    deadline: float,
    nolog_connections: set[int],
) -> tuple[list[dict[str, Any]], bool]:
    """Every round runs every target at every concurrency. A round starts only if it fits in
    the time budget (the first always runs): a busy machine gets fewer rounds, not a cell
    missing from a round."""
    cells: list[dict[str, Any]] = []
    round_started = time.monotonic()
    for r in range(rounds):
        if r > 0:
            last_round = time.monotonic() - round_started
            if time.monotonic() + last_round > deadline:
                print(f"  time budget reached: {r} of {rounds} rounds done", flush=True)
                return cells, False
        round_started = time.monotonic()
        for ci, conns in enumerate(connections):
            chosen = [
                t
                for t in targets
                if t.name != "beyondfit-predict-nolog" or conns in nolog_connections
            ]
            shift = (r + ci) % len(chosen)
            for target in chosen[shift:] + chosen[:shift]:
                if warmup > 0:
                    run_wrk(target, conns, warmup)
                load1 = os.getloadavg()[0]
                host0 = host_busy_ticks()
                cpu0 = cpu_snapshot(target.sid)
                t0 = time.monotonic()
                res, wrk_cpu, output = run_wrk(target, conns, seconds)
                wall = time.monotonic() - t0
                cpu1 = cpu_snapshot(target.sid)
                host1 = host_busy_ticks()
                per_proc = cpu_delta_seconds(cpu0, cpu1)
                mem = {p: m for p in cpu1 if (m := memory(p)) is not None}
                duration = res["duration_us"] / 1e6
                errors = (
                    res["connect"] + res["read"] + res["write"] + res["timeout"] + res["status"]
                )
                ok = res["requests"] - res["status"]
                server_cpu = sum(per_proc.values())
                host_cores = (
                    (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * (os.cpu_count() or 1)
                )
                cell = {
                    "round": r + 1,
                    "target": target.name,
                    "connections": conns,
                    "seconds": duration,
                    "requests": res["requests"],
                    "ok": ok,
                    "errors": errors,
                    "error_detail": {
                        k: res[k] for k in ("connect", "read", "write", "timeout", "status")
                    },
                    "rps": ok / duration if duration else 0.0,
                    "p50_ms": res["p50_us"] / 1000,
                    "p90_ms": res["p90_us"] / 1000,
                    "p95_ms": res["p95_us"] / 1000,
                    "p99_ms": res["p99_us"] / 1000,
                    "mean_ms": res["mean_us"] / 1000,
                    "max_ms": res["max_us"] / 1000,
                    "server_cpu_s": server_cpu,
                    "server_cpu_ms_per_req": server_cpu / res["requests"] * 1000
                    if res["requests"]
                    else None,
                    "server_cores": server_cpu / wall,
                    "server_cpu_per_process": {
                        str(p): {"cpu_s": round(c, 3), "name": proc_name(p)}
                        for p, c in per_proc.items()
                    },
                    "wrk_cpu_s": wrk_cpu,
                    "wrk_cores": wrk_cpu / wall,
                    "host_busy_cores": host_cores,
                    "loadavg_1m": load1,
                    "memory": {str(p): m for p, m in mem.items()},
                    "rss_mib_total": sum(m.get("rss_mib", 0) for m in mem.values()),
                    "pss_mib_total": sum(m.get("pss_mib", 0) for m in mem.values()),
                }
                cells.append(cell)
                (raw / f"r{r + 1}-{target.name}-c{conns}.txt").write_text(output)
                print(
                    f"  round {r + 1} c={conns:<3} {target.name:<24} rps={cell['rps']:8.1f} "
                    f"p50={cell['p50_ms']:7.2f}ms p99={cell['p99_ms']:7.2f}ms err={errors:<5} "
                    f"cpu/req={cell['server_cpu_ms_per_req'] or 0:6.2f}ms "
                    f"server={cell['server_cores']:.2f} wrk={cell['wrk_cores']:.2f} "
                    f"host={host_cores:.2f} cores load={load1:.1f}",
                    flush=True,
                )
    return cells, True


def summarise(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over rounds per (target, connections); errors summed; RSS from the last round."""
    rows = []
    keys = sorted({(c["target"], c["connections"]) for c in cells}, key=lambda k: (k[1], k[0]))
    for target, conns in keys:
        group = [c for c in cells if c["target"] == target and c["connections"] == conns]
        last = max(group, key=lambda c: c["round"])

        def med(key: str, g: list[dict[str, Any]] = group) -> float | None:
            return median([c[key] for c in g if c[key] is not None])

        rows.append(
            {
                "target": target,
                "connections": conns,
                "rounds": len(group),
                "rps": med("rps"),
                "rps_min": min(c["rps"] for c in group),
                "rps_max": max(c["rps"] for c in group),
                "p50_ms": med("p50_ms"),
                "p95_ms": med("p95_ms"),
                "p99_ms": med("p99_ms"),
                "errors": sum(c["errors"] for c in group),
                "requests": sum(c["requests"] for c in group),
                "server_cpu_ms_per_req": med("server_cpu_ms_per_req"),
                "server_cores": med("server_cores"),
                "wrk_cores": med("wrk_cores"),
                "host_busy_cores": med("host_busy_cores"),
                "rss_mib_total": last["rss_mib_total"],
                "pss_mib_total": last["pss_mib_total"],
                "rss_per_process": {
                    p: {"name": last["server_cpu_per_process"].get(p, {}).get("name", "?"), **m}
                    for p, m in last["memory"].items()
                },
            }
        )
    return rows


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["target"], r["connections"]): r for r in rows}
    out = []
    for conns in sorted({r["connections"] for r in rows}):
        bf = by.get(("beyondfit-predict", conns))
        mls = [by[k] for k in (("mlflow-w1", conns), ("mlflow-w2", conns)) if k in by]
        if bf is None or not mls:
            continue
        best = max(mls, key=lambda r: r["rps"] or 0)
        floor = by.get(("beyondfit-constant", conns))
        nolog = by.get(("beyondfit-predict-nolog", conns))
        out.append(
            {
                "connections": conns,
                "beyondfit_rps": bf["rps"],
                "beyondfit_nolog_rps": nolog["rps"] if nolog else None,
                "floor_rps": floor["rps"] if floor else None,
                "mlflow_w1_rps": by.get(("mlflow-w1", conns), {}).get("rps"),
                "mlflow_w2_rps": by.get(("mlflow-w2", conns), {}).get("rps"),
                "best_mlflow": best["target"],
                "ratio_vs_best_mlflow": (bf["rps"] or 0) / best["rps"] if best["rps"] else None,
                "nolog_ratio_vs_best_mlflow": (nolog["rps"] or 0) / best["rps"]
                if nolog and best["rps"]
                else None,
                "predict_share_of_floor": (bf["rps"] or 0) / floor["rps"]
                if floor and floor["rps"]
                else None,
            }
        )
    return out


def readiness_summary(ready: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    def med(kind: str, key: str) -> float | None:
        return median([x[key] for x in ready.get(kind, []) if key in x])

    s: dict[str, Any] = {
        "reps": {k: len(v) for k, v in ready.items()},
        "inprocess_import_s": med("inprocess", "import_s"),
        "inprocess_load_s": med("inprocess", "load_s"),
        "inprocess_interpreter_start_s": med("inprocess", "interpreter_start_s"),
        "inprocess_process_to_loaded_s": med("inprocess", "process_to_loaded_s"),
        "beyondfit_alive_s": med("beyondfit", "alive_s"),
        "beyondfit_ready_s": med("beyondfit", "ready_s"),
        "beyondfit_mlflow_loader_alive_s": med("beyondfit_mlflow_loader", "alive_s"),
        "beyondfit_mlflow_loader_ready_s": med("beyondfit_mlflow_loader", "ready_s"),
        "mlflow_w2_ready_s": med("mlflow_w2", "ready_s"),
    }
    if s["beyondfit_ready_s"] and s["inprocess_load_s"]:
        s["ratio_vs_load_model"] = s["beyondfit_ready_s"] / s["inprocess_load_s"]
    if s["beyondfit_ready_s"] and s["inprocess_process_to_loaded_s"]:
        s["ratio_vs_process_to_loaded"] = (
            s["beyondfit_ready_s"] / s["inprocess_process_to_loaded_s"]
        )
    return s


def f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    cfg = result["config"]
    la = result["loadavg"]
    lines = [
        f"# Serving benchmark, {result['started']}",
        "",
        f"{m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, git {m['git']}. "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + ".",
        f"Model `{MODEL_URI}` (version {result['model_version']}), one held-out row per request. "
        f"{cfg['rounds']} interleaved rounds x {cfg['seconds']} s per cell "
        f"({cfg['warmup']} s warm-up before each), wrk 1 thread, keep-alive. "
        f"Load average (1 min) during the load phase: min {f(la['min'])}, "
        f"median {f(la['median'])}, max {f(la['max'])}; host busy cores median "
        f"{f(la['host_busy_cores_median'], 2)} of {m['cores']}."
        + (
            ""
            if result["complete"]
            else f" **The time budget cut the load phase to {result['rounds_done']} round(s).**"
        ),
        "",
        "## Throughput and latency (median over rounds)",
        "",
        "| target | conns | rps (min-max) | p50 ms | p95 ms | p99 ms | errors | server CPU ms/req "
        "| server cores | wrk cores | RSS MiB (PSS) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['target']} | {r['connections']} | {f(r['rps'], 0)} "
            f"({f(r['rps_min'], 0)}-{f(r['rps_max'], 0)}) | {f(r['p50_ms'], 2)} "
            f"| {f(r['p95_ms'], 2)} | {f(r['p99_ms'], 2)} | {r['errors']}/{r['requests']} "
            f"| {f(r['server_cpu_ms_per_req'], 2)} | {f(r['server_cores'], 2)} "
            f"| {f(r['wrk_cores'], 2)} | {f(r['rss_mib_total'], 0)} ({f(r['pss_mib_total'], 0)}) |"
        )
    lines += [
        "",
        "## beyondfit /predict vs the better `mlflow models serve` at each concurrency",
        "",
        "| conns | beyondfit rps | mlflow -w1 rps | mlflow -w2 rps | ratio vs better | "
        "access log off rps (ratio) | floor rps | predict / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["comparison"]:
        nolog = (
            f"{f(c['beyondfit_nolog_rps'], 0)} ({f(c['nolog_ratio_vs_best_mlflow'], 2)}x)"
            if c["beyondfit_nolog_rps"]
            else "-"
        )
        lines.append(
            f"| {c['connections']} | {f(c['beyondfit_rps'], 0)} | {f(c['mlflow_w1_rps'], 0)} "
            f"| {f(c['mlflow_w2_rps'], 0)} | **{f(c['ratio_vs_best_mlflow'], 2)}x** "
            f"({c['best_mlflow']}) | {nolog} | {f(c['floor_rps'], 0)} "
            f"| {f(c['predict_share_of_floor'], 2)} |"
        )
    rd = result["readiness"]
    lines += [
        "",
        "## Readiness (medians)",
        "",
        "| what | seconds |",
        "|---|---:|",
        f"| in-process: interpreter start | {f(rd['inprocess_interpreter_start_s'], 2)} |",
        f"| in-process: `import mlflow, mlflow.pyfunc` | {f(rd['inprocess_import_s'], 2)} |",
        f'| in-process: `mlflow.pyfunc.load_model("{MODEL_URI}")` '
        f"| {f(rd['inprocess_load_s'], 2)} |",
        f"| in-process: process start -> model loaded | "
        f"{f(rd['inprocess_process_to_loaded_s'], 2)} |",
        f"| beyondfit (gunicorn, 2 workers): start -> /health 200 "
        f"| {f(rd['beyondfit_alive_s'], 2)} |",
        f"| beyondfit: start -> /health/ready 200 | {f(rd['beyondfit_ready_s'], 2)} |",
        f"| beyondfit, `BEYONDFIT_MODEL_LOADER=mlflow`: start -> /health 200 "
        f"| {f(rd['beyondfit_mlflow_loader_alive_s'], 2)} |",
        f"| beyondfit, `BEYONDFIT_MODEL_LOADER=mlflow`: start -> /health/ready 200 "
        f"| {f(rd['beyondfit_mlflow_loader_ready_s'], 2)} |",
        f"| mlflow models serve -w 2: start -> /ping 200 | {f(rd['mlflow_w2_ready_s'], 2)} |",
        "",
        f"Repetitions: {rd['reps']}. beyondfit ready / load_model = "
        f"**{f(rd.get('ratio_vs_load_model'), 2)}x**; beyondfit ready / (process start -> "
        f"loaded) = **{f(rd.get('ratio_vs_process_to_loaded'), 2)}x**.",
        "",
        "## Goals",
        "",
    ]
    for g in result["goals"]:
        lines.append(f"- {g}")
    lines.append("")
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> list[str]:
    out = []
    c8 = next((c for c in result["comparison"] if c["connections"] == 8), None)
    if c8 and c8["ratio_vs_best_mlflow"] is not None:
        ok = c8["ratio_vs_best_mlflow"] >= 2
        out.append(
            f"throughput at 8 connections >= 2x the better mlflow models serve: "
            f"{c8['ratio_vs_best_mlflow']:.2f}x -> {'MET' if ok else 'MISSED'}"
        )
    rd = result["readiness"]
    if rd.get("ratio_vs_load_model") is not None:
        ok = rd["ratio_vs_load_model"] <= 1.5
        lenient = rd.get("ratio_vs_process_to_loaded")
        out.append(
            f"ready within 1.5x an in-process load_model: {rd['ratio_vs_load_model']:.2f}x of "
            f"the load_model call -> {'MET' if ok else 'MISSED'}"
            + (
                f" ({lenient:.2f}x of process start -> loaded, "
                f"{'within' if lenient <= 1.5 else 'over'} 1.5x)"
                if lenient
                else ""
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="1 round x 4 s, 1 readiness rep, no access-log-off"
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--seconds", type=float, help="measured seconds per cell (10, quick 4)")
    p.add_argument("--warmup", type=float, help="warm-up seconds before each cell (2, quick 1)")
    p.add_argument("--connections", default="1,8,64", help="comma list (default 1,8,64)")
    p.add_argument(
        "--nolog-connections",
        help="where to also load a beyondfit server with BEYONDFIT_ACCESS_LOG=false "
        "(comma list, 'none' to skip; default 8, quick none)",
    )
    p.add_argument("--ready-reps", type=int, help="readiness repetitions (3, quick 1)")
    p.add_argument(
        "--budget",
        type=float,
        help="time budget in seconds (default 900, quick 230): readiness repetitions and load "
        "rounds that would not fit are dropped; the first of each always runs",
    )
    args = p.parse_args(argv)
    q = args.quick
    rounds = args.rounds or (1 if q else 3)
    seconds = args.seconds or (4.0 if q else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if q else 2.0)
    ready_reps = args.ready_reps if args.ready_reps is not None else (1 if q else 3)
    budget = args.budget or (230.0 if q else 900.0)
    connections = [int(x) for x in args.connections.split(",")]
    nolog_arg = args.nolog_connections or ("none" if q else "8")
    nolog = set() if nolog_arg == "none" else {int(x) for x in nolog_arg.split(",")}

    started_mono = time.monotonic()
    deadline = started_mono + budget
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = RESULTS / stamp
    raw = RESULTS / "raw" / stamp
    workdir = raw / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    # SIGTERM/SIGINT -> exceptions, so the finally below stops every server.
    def _stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    servers: list[Any] = []
    mlflow_server = MlflowServer(workdir / "mlflow")
    loads: list[float] = [os.getloadavg()[0]]
    try:
        print(f"[bench] results -> {out_dir}, raw -> {raw}", flush=True)
        print("[bench] starting the MLflow tracking server", flush=True)
        mlflow_server.start()
        tracking = mlflow_server.url
        os.environ["MLFLOW_TRACKING_URI"] = tracking
        from training.data import load_dataset, split
        from training.train import TrainConfig, train

        print("[bench] training and registering the model", flush=True)
        config = TrainConfig(tracking_uri=tracking, model_name=MODEL_NAME)
        trained = train(config)
        features, target, _ = load_dataset(config.dataset)
        held_out = split(features, target, config.test_size, config.seed)[1]
        columns = [str(c) for c in held_out.columns]
        row = {str(c): float(v) for c, v in held_out.iloc[0].items()}

        print(f"[bench] readiness: {ready_reps} interleaved repetitions", flush=True)
        # Leave the load phase the time it needs (cells x (warm-up + measure + overhead)).
        n_cells = rounds * sum(4 + (c in nolog) for c in connections)
        load_phase = n_cells * (warmup + seconds + 1.5) + 90  # + starting the servers
        ready = measure_readiness(workdir, tracking, ready_reps, deadline - load_phase)

        print("[bench] starting the servers under test", flush=True)
        targets, servers = build_targets(tracking, workdir, raw, row, columns, bool(nolog))
        expected = None
        for t in targets:
            label = verify_prediction(t, expected)
            if t.name == "beyondfit-predict":
                expected = label
        print(
            f"[bench] all targets answer 200; predictions agree ({expected}); load phase: "
            f"{rounds} rounds x {connections} connections x {seconds} s",
            flush=True,
        )
        cells, complete = run_cells(
            targets, connections, rounds, seconds, warmup, raw, deadline, nolog
        )
        loads += [c["loadavg_1m"] for c in cells]
        result: dict[str, Any] = {
            "started": stamp,
            "complete": complete,
            "rounds_done": max((c["round"] for c in cells), default=0),
            "elapsed_s": time.monotonic() - started_mono,
            "config": {
                "rounds": rounds,
                "seconds": seconds,
                "warmup": warmup,
                "connections": connections,
                "nolog_connections": sorted(nolog),
                "ready_reps": ready_reps,
                "quick": q,
            },
            "machine": machine_info(),
            "model_version": trained.version,
            "targets": {t.name: t.description for t in targets},
            "loadavg": {
                "min": min(loads),
                "median": statistics.median(loads),
                "max": max(loads),
                "host_busy_cores_median": median([c["host_busy_cores"] for c in cells]),
            },
            "readiness_raw": ready,
            "readiness": readiness_summary(ready),
            "cells": cells,
        }
        result["summary"] = summarise(cells)
        result["comparison"] = comparisons(result["summary"])
        result["goals"] = goals(result)
        (out_dir / "results.json").write_text(json.dumps(result, indent=2, default=str))
        md = markdown(result)
        (out_dir / "summary.md").write_text(md)
        shutil.copyfile(out_dir / "summary.md", RESULTS / "latest.md")
        print(md, flush=True)
        print(f"[bench] done in {time.monotonic() - started_mono:.0f} s -> {out_dir}", flush=True)
        return 0
    finally:
        for s in reversed(servers):
            with contextlib.suppress(Exception):
                s.stop()
        mlflow_server.stop()
        # Server logs grow with every request (access logs): keep their tails only.
        for log in workdir.glob("*.log"):
            with contextlib.suppress(OSError):
                if log.stat().st_size > 2_000_000:
                    with log.open("rb") as fh:
                        fh.seek(-200_000, os.SEEK_END)
                        tail = fh.read()
                    log.write_bytes(b"[... truncated by bench.py ...]\n" + tail)


if __name__ == "__main__":
    sys.exit(main())
