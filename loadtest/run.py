"""Headless, time-bounded load test of a running beyondfit service, with a memory-leak verdict.

    python loadtest/run.py --host http://127.0.0.1:8000 --profile steady --duration 60 \\
        --users 4 --rows rows.csv --out loadtest/results/steady

Runs locust (loadtest/locustfile.py) for --duration seconds while sampling the resident
memory (RSS) of the gunicorn master and of every worker from /proc, then writes to --out:
  report.json   p50/p95/p99 latency, throughput, errors, RSS per worker, leak verdict
  rss.csv       t_seconds, pid, role, rss_bytes (one line per process and sample)
  locust_*.csv  locust's own statistics
  report.png    RSS of each worker over time, with the fitted trend

Leak verdict, per worker: a least-squares line through the RSS samples after the warm-up
(the first --warmup seconds: imports, first requests, allocator arenas filling); growth =
fitted RSS at the end / fitted RSS at the start of that part - 1. A worker "leaks" when its
growth is over --leak-threshold-pct AND its slope over --leak-min-slope-mib-per-min (so a
few hundred kilobytes of allocator noise on a short run do not count).

The gunicorn master is --master-pid, or found as the process listening on --host's port.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
MIB = 1024 * 1024
PROGRESS_EVERY_S = 10.0


# --- processes ------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Direct children of pid (gunicorn's workers are the master's children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def listening_pids(port: int) -> set[int]:
    """Processes that hold a TCP socket listening on `port` (IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    pids.add(int(entry))
                    break
            except OSError:
                continue
    return pids


def find_master(port: int) -> int:
    """The gunicorn master: of the processes sharing the listening socket, the one whose
    parent does not share it."""
    pids = listening_pids(port)
    if not pids:
        raise SystemExit(f"no process listens on port {port}: pass --master-pid")
    for pid in sorted(pids):
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) not in pids:
            return pid
    return min(pids)


# --- analysis -------------------------------------------------------------------------------


@dataclass
class WorkerMemory:
    pid: int
    samples: int
    rss_start_mib: float
    rss_end_mib: float
    rss_max_mib: float
    slope_mib_per_min: float
    growth_pct: float
    leak: bool


def linear_fit(ts: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line."""
    n = len(ts)
    mean_t, mean_y = sum(ts) / n, sum(ys) / n
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return 0.0, mean_y
    slope = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys, strict=True)) / var
    return slope, mean_y - slope * mean_t


def leak_verdict(
    series: list[tuple[float, int]],
    warmup: float,
    threshold_pct: float,
    min_slope_mib: float,
    pid: int,
) -> WorkerMemory:
    after = [(t, r) for t, r in series if t >= warmup] or series
    ts = [t for t, _ in after]
    ys = [r / MIB for _, r in after]
    slope, intercept = linear_fit(ts, ys)
    start, end = intercept + slope * ts[0], intercept + slope * ts[-1]
    growth = (end / start - 1) * 100 if start > 0 else 0.0
    slope_min = slope * 60
    return WorkerMemory(
        pid=pid,
        samples=len(series),
        rss_start_mib=round(ys[0], 2),
        rss_end_mib=round(ys[-1], 2),
        rss_max_mib=round(max(r for _, r in series) / MIB, 2),
        slope_mib_per_min=round(slope_min, 3),
        growth_pct=round(growth, 2),
        leak=growth > threshold_pct and slope_min > min_slope_mib,
    )


def locust_totals(prefix: Path) -> dict[str, Any]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    agg = next(r for r in rows if r["Name"] == "Aggregated")

    def num(key: str) -> float:
        value = agg.get(key, "")
        return float(value) if value not in ("", "N/A") else 0.0

    return {
        "requests": int(num("Request Count")),
        "failures": int(num("Failure Count")),
        "rps": round(num("Requests/s"), 2),
        "latency_ms": {
            "p50": num("50%"),
            "p95": num("95%"),
            "p99": num("99%"),
            "avg": round(num("Average Response Time"), 2),
            "max": num("Max Response Time"),
        },
    }


def plot(
    path: Path,
    rss: dict[int, list[tuple[float, int]]],
    roles: dict[int, str],
    verdicts: dict[int, WorkerMemory],
    warmup: float,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for pid, series in sorted(rss.items()):
        ts = [t for t, _ in series]
        ax.plot(ts, [r / MIB for _, r in series], label=f"{roles[pid]} {pid}")
        if pid in verdicts:
            v = verdicts[pid]
            fit_ts = [t for t in ts if t >= warmup] or ts
            slope = v.slope_mib_per_min / 60
            base = v.rss_start_mib
            ax.plot(
                fit_ts,
                [base + slope * (t - fit_ts[0]) for t in fit_ts],
                "--",
                linewidth=1,
                label=f"trend {pid}: {v.slope_mib_per_min:+.2f} MiB/min",
            )
    ax.axvline(warmup, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Headless load test with a leak verdict.")
    p.add_argument("--host", required=True, help="service base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--profile", choices=["steady", "spike", "drift"], default="steady")
    p.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    p.add_argument("--users", type=int, default=4, help="concurrent users (default 4)")
    p.add_argument("--rate", type=float, default=10.0, help="requests/s per user (default 10)")
    p.add_argument("--rows", type=Path, help="CSV of input rows (default: the input example)")
    p.add_argument("--master-pid", type=int, help="gunicorn master (default: found by port)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--sample-interval", type=float, default=1.0, help="RSS sampling period, s")
    p.add_argument("--warmup", type=float, help="seconds left out of the leak fit (default 25%%)")
    p.add_argument("--leak-threshold-pct", type=float, default=10.0)
    p.add_argument("--leak-min-slope-mib-per-min", type=float, default=1.0)
    args = p.parse_args(argv)

    port = urllib.parse.urlsplit(args.host).port or 80
    master = args.master_pid or find_master(port)
    warmup = args.warmup if args.warmup is not None else args.duration * 0.25
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / "locust"
    env = dict(
        os.environ,
        BEYONDFIT_LOAD_PROFILE=args.profile,
        BEYONDFIT_LOAD_RATE=str(args.rate),
        BEYONDFIT_LOAD_DURATION=str(args.duration),
        BEYONDFIT_LOAD_ROWS=str(args.rows.resolve()) if args.rows else "",
    )
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        args.host,
        "-u",
        str(args.users),
        "-r",
        str(args.users),
        "-t",
        f"{args.duration}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    rss: dict[int, list[tuple[float, int]]] = {}
    roles: dict[int, str] = {}
    start = time.monotonic()
    next_progress = PROGRESS_EVERY_S
    with open(args.out / "locust.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = start + args.duration + 60
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait(10)
                    raise SystemExit("locust did not stop in time; see locust.log")
                t = round(time.monotonic() - start, 2)
                if t >= next_progress:  # a long run says what it is doing
                    next_progress += PROGRESS_EVERY_S
                    print(
                        f"load: {t:.0f} of {args.duration} s, sampling the RSS of "
                        f"{1 + len(children(master))} processes",
                        file=sys.stderr,
                        flush=True,
                    )
                for pid, role in [(master, "master")] + [(w, "worker") for w in children(master)]:
                    value = rss_bytes(pid)
                    if value is not None:
                        rss.setdefault(pid, []).append((t, value))
                        roles[pid] = role
                time.sleep(args.sample_interval)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"locust exited {proc.returncode}; see {args.out / 'locust.log'}")

    totals = locust_totals(prefix)
    workers = {pid: s for pid, s in rss.items() if roles[pid] == "worker" and len(s) >= 3}
    verdicts = {
        pid: leak_verdict(s, warmup, args.leak_threshold_pct, args.leak_min_slope_mib_per_min, pid)
        for pid, s in workers.items()
    }
    report = {
        "profile": args.profile,
        "host": args.host,
        "users": args.users,
        "rate_per_user": args.rate,
        "duration_s": args.duration,
        "wall_s": round(elapsed, 1),
        **totals,
        "error_ratio": round(totals["failures"] / totals["requests"], 6)
        if totals["requests"]
        else 0,
        "master_pid": master,
        "master_rss_mib": round(rss[master][-1][1] / MIB, 2) if rss.get(master) else None,
        "workers": [asdict(v) for v in verdicts.values()],
        "leak": {
            "verdict": "leak suspected" if any(v.leak for v in verdicts.values()) else "no leak",
            "method": "least-squares RSS slope after warm-up; leak = growth > threshold "
            "and slope > minimum slope",
            "warmup_s": warmup,
            "threshold_pct": args.leak_threshold_pct,
            "min_slope_mib_per_min": args.leak_min_slope_mib_per_min,
        },
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(args.out / "rss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_seconds", "pid", "role", "rss_bytes"])
        for pid, series in sorted(rss.items()):
            for t, value in series:
                w.writerow([t, pid, roles[pid], value])
    plot(
        args.out / "report.png",
        rss,
        roles,
        verdicts,
        warmup,
        f"beyondfit {args.profile}: {totals['rps']} req/s, p95 {totals['latency_ms']['p95']} ms, "
        f"{report['leak']['verdict']}",
    )
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("profile", "requests", "failures", "rps", "latency_ms", "leak")
            },
            indent=2,
        )
    )
    for v in verdicts.values():
        print(
            f"worker {v.pid}: {v.rss_start_mib} -> {v.rss_end_mib} MiB, "
            f"{v.slope_mib_per_min:+.3f} MiB/min, {v.growth_pct:+.2f}%"
            f"{' LEAK' if v.leak else ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
