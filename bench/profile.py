"""Where a beyondfit /predict request spends its CPU: py-spy on both gunicorn workers under load.

    bench/profile.sh                      # POST /predict, 8 connections, 20 s
    bench/profile.sh --path /bench/constant --access-log false

Starts an MLflow server, trains once, starts the service (2 workers, 127.0.0.1), loads it with
wrk and records every worker with py-spy (on-CPU samples only, `--format raw` collapsed
stacks). Prints the share of samples under each frame of interest (inclusive) and the top
functions by own time; the stacks and a speedscope file go to bench/results/raw/profile-*/.
Needs py-spy on PATH or in /tmp/benchvenv (bench/profile.sh installs it there).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench import (
    MODEL_NAME,
    RESULTS,
    Target,
    beyondfit_env,
    run_wrk,
    write_lua,
)
from tests.support.procs import MlflowServer, Service

# Frames whose inclusive share answers "what costs what" (matched as substrings of a frame).
GROUPS = {
    "uvicorn HTTP protocol and everything under it": "uvicorn/protocols/http",
    "RequestContextMiddleware and everything under it": "(app/middleware.py",
    "FastAPI request handler (routing, dependencies, endpoint)": "get_request_handler",
    "FastAPI dependency solving": "solve_dependencies",
    "sync dependencies sent to the thread pool (anyio.to_thread)": "anyio/to_thread",
    "the /predict endpoint function": "predict (app/routes.py",
    "request body validation (pydantic, app/schema.py parse)": "parse (app/schema.py",
    "rows to numpy array (app/schema.py to_array)": "to_array (app/schema.py",
    "inference (app/inference.py infer)": "infer (app/inference.py",
    "scikit-learn, all of it": "sklearn/",
    "scikit-learn predict (labels)": "predict (sklearn/pipeline.py",
    "scikit-learn predict_proba": "predict_proba (sklearn/pipeline.py",
    "scikit-learn input validation (check_array, feature names)": "sklearn/utils/validation.py",
    "drift bin counting (app/metrics.py count)": "count (app/metrics.py",
    "prometheus_client metric updates": "prometheus_client/",
    "logging (access log)": "logging/__init__.py",
    "JSON response (json.dumps)": "json_response (app/routes.py",
}
# A sample whose innermost frame is one of these is a thread waiting, not working (py-spy's
# own idle detection does not see through every wait here).
IDLE_LEAVES = (
    "Condition.wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "EpollSelector.select (selectors.py",
    "Event.wait (threading.py",
    "_wait_for_tstate_lock",
)


def py_spy() -> str:
    found = shutil.which("py-spy") or "/tmp/benchvenv/bin/py-spy"
    if not Path(found).exists():
        raise SystemExit("py-spy not found: run bench/profile.sh (installs it in /tmp/benchvenv)")
    return found


def analyse(all_stacks: dict[str, int]) -> dict[str, object]:
    stacks = {
        s: n for s, n in all_stacks.items() if not s.rsplit(";", 1)[-1].startswith(IDLE_LEAVES)
    }
    total = sum(stacks.values()) or 1
    inclusive = {}
    for label, needle in GROUPS.items():
        inclusive[label] = sum(n for s, n in stacks.items() if needle in s) / total
    own: collections.Counter[str] = collections.Counter()
    for s, n in stacks.items():
        own[s.split(";")[-1]] += n
    return {
        "samples": sum(all_stacks.values()),
        "active_samples": total,
        "inclusive_share": inclusive,
        "top_own": [(frame, n / total) for frame, n in own.most_common(25)],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--path", default="/predict")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--access-log", default="true", choices=("true", "false"))
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = p.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / "raw" / f"profile-{stamp}"
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    mlflow_server = MlflowServer(work / "mlflow")
    service: Service | None = None
    recorders: list[subprocess.Popen[bytes]] = []
    try:
        mlflow_server.start()
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_server.url
        from training.data import load_dataset, split
        from training.train import TrainConfig, train

        config = TrainConfig(tracking_uri=mlflow_server.url, model_name=MODEL_NAME)
        train(config)
        features, target, _ = load_dataset(config.dataset)
        row = split(features, target, config.test_size, config.seed)[1].iloc[0]
        body = json.dumps({"instances": [{str(k): float(v) for k, v in row.items()}]}).encode()
        env = beyondfit_env(mlflow_server.url, args.access_log == "true")
        service = Service(work, env, workers=2).start()
        service.wait_ready(240)
        t = Target("profile", "beyondfit", service.url, service.master_pid, body, args.path)
        write_lua(t, out)
        run_wrk(t, args.connections, 3)  # warm-up
        for pid in service.worker_pids():
            recorders.append(
                subprocess.Popen(
                    [
                        py_spy(),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(args.seconds),
                        "--rate",
                        str(args.rate),
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(out / f"worker-{pid}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=open(out / f"py-spy-{pid}.log", "wb"),  # noqa: SIM115
                )
            )
        res, _, _ = run_wrk(t, args.connections, args.seconds)
        for r in recorders:
            r.wait(60)
        stacks: collections.Counter[str] = collections.Counter()
        for f in out.glob("worker-*.txt"):
            for line in f.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                if stack:
                    stacks[stack] += int(n)
        report = analyse(dict(stacks))
        report["wrk"] = res
        report["path"] = args.path
        report["access_log"] = args.access_log
        (out / "profile.json").write_text(json.dumps(report, indent=2))
        rps = res["requests"] / (res["duration_us"] / 1e6)
        print(f"{args.path} at {args.connections} connections: {rps:.0f} rps under py-spy")
        print(
            f"{report['active_samples']} working samples ({report['samples']} with waiting "
            "threads) over both workers; inclusive shares of the working ones:"
        )
        for label, share in report["inclusive_share"].items():  # type: ignore[attr-defined]
            print(f"  {share * 100:5.1f}%  {label}")
        print("top frames by own time:")
        for frame, share in report["top_own"]:  # type: ignore[attr-defined]
            print(f"  {share * 100:5.1f}%  {frame}")
        print(f"stacks: {out}")
        return 0
    finally:
        for r in recorders:
            with contextlib.suppress(Exception):
                if r.poll() is None:
                    r.kill()
                    r.wait(10)
        if service is not None:
            service.stop()
        mlflow_server.stop()


if __name__ == "__main__":
    sys.exit(main())
