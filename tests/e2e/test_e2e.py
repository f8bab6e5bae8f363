"""The whole stack on the local Kubernetes cluster, with the images built here and the charts
of this repository. The tests run in file order and build on each other, like a deployment:
MLflow in, a model trained against it, the service in (slowly, through an MLflow that answers
late),
helm test, a rolling update under load, an alias move, the HPA under load, uninstall.

`bash scripts/test.sh e2e` prepares everything first (scripts/setup-e2e.sh: tools, images,
cluster, images loaded into the cluster's containerd).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.k8s_helpers import (
    KUBECONFIG,
    apply,
    kubectl,
    kubectl_json,
    run_tool,
    wait_until,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NS = "beyondfit-e2e"
CACHE = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit"))


def helm(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [str(CACHE / "bin" / "helm"), "--kubeconfig", str(KUBECONFIG), "-n", NS]
    return run_tool("helm", argv, *args, check=check, timeout=timeout)


def upgrade_service(setting: str) -> None:
    """helm upgrade of the service release with one value changed, waiting for the rollout."""
    helm(
        "upgrade",
        "beyondfit",
        str(REPO / "charts/beyondfit"),
        "--reuse-values",
        "--set",
        setting,
        "--wait",
        "--timeout",
        "5m",
    )


def service_url(name: str) -> str:
    svc = kubectl_json("-n", NS, "get", "service", name)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def service_pods() -> list[dict[str, Any]]:
    pods = kubectl_json(
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=beyondfit,app.kubernetes.io/instance=beyondfit",
    )
    return [p for p in pods["items"] if "helm.sh/hook" not in p["metadata"].get("annotations", {})]


def pod_url(pod: dict[str, Any]) -> str:
    """The pod's own address and its container's "http" port (bypassing the Service)."""
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    port = next(p["containerPort"] for p in ports if p.get("name") == "http")
    return f"http://{pod['status']['podIP']}:{port}"


def restarts(pods: list[dict[str, Any]]) -> int:
    return sum(
        c.get("restartCount", 0)
        for p in pods
        for c in p.get("status", {}).get("containerStatuses", [])
    )


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def train(mlflow_url: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "training.train", "--json", *args],
        cwd=REPO,
        env=dict(os.environ, MLFLOW_TRACKING_URI=mlflow_url),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class LoadLoop:
    """Single-row predictions from `threads` threads against the Service until stopped
    (or for at most 600 s / `max_requests` requests). Every answer is recorded: a 200 with its
    model version and time, anything else (status, bad body, exception) as a failure, so a
    broken answer cannot end a thread unseen."""

    def __init__(
        self,
        url: str,
        row: dict[str, float],
        threads: int = 2,
        pause: float = 0.02,
        max_requests: int = 30_000,
    ) -> None:
        self.url, self.row, self.pause = url, row, pause
        self.ok = 0
        self.ok_times: list[float] = []
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self._budget = max_requests
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._budget <= 0:
                        return
                    self._budget -= 1
                try:
                    r = client.post(f"{self.url}/predict", json={"instances": [self.row]})
                    version = r.json()["model_version"] if r.status_code == 200 else None
                except Exception as e:
                    with self._lock:
                        self.failures.append(repr(e))
                else:
                    with self._lock:
                        if version is None:
                            self.failures.append(f"{r.status_code} {r.text[:200]}")
                        else:
                            self.ok += 1
                            self.ok_times.append(time.monotonic())
                            self.versions.add(str(version))
                time.sleep(self.pause)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between successive 200s (and the window's ends) in [start, end]."""
        with self._lock:
            times = [start, *(t for t in self.ok_times if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load thread hangs"


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=300)
    kubectl("create", "namespace", NS)
    kubectl(
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    yield NS
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def mlflow(namespace: str) -> str:
    helm(
        "upgrade",
        "--install",
        "mlflow",
        str(REPO / "charts/mlflow"),
        "-f",
        str(REPO / "inventories/local/values/mlflow.yaml"),
        "--wait",
        "--timeout",
        "5m",
    )
    url = service_url("mlflow")
    wait_until("MLflow through its ClusterIP", lambda: _ok(f"{url}/health"), timeout=120)
    return url


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def first_model(mlflow: str) -> dict[str, Any]:
    result = train(mlflow)
    assert result["promoted"], result
    return result


@pytest.fixture(scope="module")
def sample_row(first_model: dict[str, Any]) -> dict[str, float]:
    from training.data import load_dataset, split

    X, y, _ = load_dataset("breast_cancer")
    _, X_test, _, _ = split(X, y, 0.25, 42)
    return {k: float(v) for k, v in X_test.iloc[0].items()}


def test_mlflow_runs_under_restricted_pod_security(
    mlflow: str, first_model: dict[str, Any]
) -> None:
    labels = kubectl_json("get", "namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pvc = kubectl_json("-n", NS, "get", "pvc")["items"]
    assert pvc
    assert all(p["status"]["phase"] == "Bound" for p in pvc)
    assert first_model["version"] == 1


SLOW_DELAY_S = 8
"""How late the slow MLflow answers each request: under the service's default 10 s per-call
timeout, and a model load makes several calls in a row (alias, download URI, MLmodel, model
files), so the first load takes most of a minute: many probe periods."""


def start_slow_mlflow(delay: float) -> str:
    """tests/e2e/slow_proxy.py in a pod (restricted securityContext, the MLflow image's
    Python) in front of the MLflow Service; returns its in-cluster URL."""
    tag = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in (REPO / "charts/beyondfit/Chart.yaml").read_text().splitlines()
        if line.startswith("appVersion:")
    )
    kubectl("-n", NS, "create", "configmap", "slow-proxy",
            f"--from-file=slow_proxy.py={REPO / 'tests/e2e/slow_proxy.py'}")  # fmt: skip
    labels = {"app": "mlflow-slow"}
    container = {
        "name": "proxy",
        "image": f"localhost/beyondfit-mlflow:{tag}",
        "imagePullPolicy": "Never",
        "command": ["python3", "/proxy/slow_proxy.py"],
        "env": [
            {"name": "UPSTREAM", "value": "http://mlflow:5000"},
            {"name": "DELAY_SECONDS", "value": str(delay)},
            {"name": "PORT", "value": "5000"},
        ],
        "ports": [{"name": "http", "containerPort": 5000}],
        "readinessProbe": {"tcpSocket": {"port": 5000}, "periodSeconds": 2},
        "volumeMounts": [{"name": "proxy", "mountPath": "/proxy", "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    manifests = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "mlflow-slow", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 10001,
                            "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "automountServiceAccountToken": False,
                        "containers": [container],
                        "volumes": [{"name": "proxy", "configMap": {"name": "slow-proxy"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "mlflow-slow", "namespace": NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 5000}]},
        },
    ]
    for manifest in manifests:
        apply(manifest)
    kubectl("-n", NS, "rollout", "status", "deployment/mlflow-slow", "--timeout=180s", timeout=200)
    return "http://mlflow-slow:5000"


def stop_slow_mlflow() -> None:
    kubectl("-n", NS, "delete", "deployment,service", "mlflow-slow", "--wait=true", timeout=120)
    kubectl("-n", NS, "delete", "configmap", "slow-proxy", timeout=60)


def worker_pids(url: str) -> frozenset[str] | None:
    """The gunicorn worker pids a pod reports in /metrics (None if it does not answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=3).text
    except httpx.HTTPError:
        return None
    return frozenset(
        line.split('pid="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("process_resident_memory_bytes{") and 'role="worker"' in line
    )


def pod_metrics_url(pod: dict[str, Any]) -> str:
    """Where a pod answers /metrics."""
    return f"{pod_url(pod)}/metrics"


def served_versions(pod: dict[str, Any]) -> set[str] | None:
    """The model versions some live gunicorn worker of the pod serves: `model_info` is 1 for
    a version while any live worker serves it (its multiprocess mode is livemax, and a worker
    sets the version it swapped out to 0). None if the pod does not answer."""
    try:
        text = httpx.get(pod_metrics_url(pod), timeout=3).text
    except httpx.HTTPError:
        return None
    return {
        line.split('version="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("model_info{") and float(line.rsplit(" ", 1)[1]) == 1
    }


def test_slow_model_load_does_not_restart_pods_then_they_become_ready(
    mlflow: str, first_model: dict[str, Any]
) -> None:
    """The service installed (helm upgrade --install --wait) against an MLflow that answers
    every call 8 s late: while the model loads, every pod stays alive and answers /health at
    once, is not ready, restarts no container and no gunicorn worker; then it becomes ready."""
    slow = start_slow_mlflow(SLOW_DELAY_S)
    installed: list[subprocess.CompletedProcess[str] | BaseException] = []

    def install() -> None:
        try:
            installed.append(helm(
                "upgrade", "--install", "beyondfit", str(REPO / "charts/beyondfit"),
                "-f", str(REPO / "inventories/local/values/beyondfit.yaml"),
                "--set", f"mlflow.trackingUri={slow}", "--wait", "--timeout", "10m",
                timeout=700,
            ))  # fmt: skip
        except BaseException as e:
            installed.append(e)

    start = time.monotonic()
    helm_thread = threading.Thread(target=install, daemon=True)
    helm_thread.start()
    workers: dict[str, frozenset[str]] = {}
    slow_health: list[str] = []
    not_ready_seen: list[float] = []
    while helm_thread.is_alive() and time.monotonic() - start < 720:
        for pod in service_pods():
            if pod["status"].get("phase") != "Running" or not pod["status"].get("podIP"):
                continue
            name, url = pod["metadata"]["name"], pod_url(pod)
            try:
                t = time.monotonic()
                health = httpx.get(f"{url}/health", timeout=3).status_code
                readiness = httpx.get(f"{url}/health/ready", timeout=3).status_code
            except httpx.HTTPError as e:
                if name in workers:  # it answered before: now it must keep answering
                    slow_health.append(f"{name}: {e!r}")
                continue
            if health != 200 or time.monotonic() - t > 2:
                slow_health.append(f"{name}: /health {health} in {time.monotonic() - t:.1f}s")
            if readiness == 503:
                not_ready_seen.append(time.monotonic() - start)
            pids = worker_pids(url)
            if pids and name not in workers:
                workers[name] = pids
        time.sleep(3)
    helm_thread.join(10)
    took = time.monotonic() - start

    assert installed, "helm did not finish in 12 minutes"
    assert not isinstance(installed[0], BaseException), installed[0]
    pods = service_pods()
    assert pods
    assert all(ready(p) for p in pods)
    assert restarts(pods) == 0
    assert slow_health == [], slow_health[:5]
    # the load really was slow: not ready for several delays (several probe periods too)
    assert not_ready_seen
    assert max(not_ready_seen) > 3 * SLOW_DELAY_S, (not_ready_seen[-1:], took)
    # the same gunicorn workers that started loading serve now: none was killed on the way
    assert workers
    for pod in pods:
        name = pod["metadata"]["name"]
        if name in workers:
            assert worker_pids(pod_url(pod)) == workers[name], name
    mlflow_pods = kubectl_json("-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=mlflow")
    assert restarts(mlflow_pods["items"]) == 0
    print(f"slow load: ready after {took:.0f} s, not ready seen until {max(not_ready_seen):.0f} s")
    # the pods really loaded through the slow proxy: it relayed the alias lookup and the
    # model's files (its log: one "METHOD PATH -> status line" per request)
    relayed = kubectl("-n", NS, "logs", "deployment/mlflow-slow", "--tail=-1").stdout
    assert "/api/2.0/mlflow/registered-models/alias" in relayed, relayed[-2000:]
    assert "/api/2.0/mlflow-artifacts/artifacts/" in relayed, relayed[-2000:]

    # back to the MLflow Service itself (a config change: the pods roll)
    upgrade_service("mlflow.trackingUri=http://mlflow:5000")
    stop_slow_mlflow()
    assert all(ready(p) for p in service_pods())


def test_helm_test_passes_and_the_service_answers_with_the_registered_version(
    first_model: dict[str, Any], sample_row: dict[str, float]
) -> None:
    for release in ("mlflow", "beyondfit"):
        out = helm("test", release, "--timeout", "5m")
        assert "Phase:          Succeeded" in out.stdout, out.stdout
    url = service_url("beyondfit")
    r = httpx.post(f"{url}/predict", json={"instances": [sample_row]}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == str(first_model["version"])
    assert httpx.get(f"{url}/metrics").status_code == 200
    # the in-cluster MLflow proxies its artifacts, so the pods read the model without MLflow
    assert httpx.get(f"{url}/model", timeout=10).json()["loader"] == "direct"


def test_rolling_update_under_load_drops_no_request(sample_row: dict[str, float]) -> None:
    url = service_url("beyondfit")
    before = {p["metadata"]["name"] for p in service_pods()}
    with LoadLoop(url, sample_row) as loop:
        time.sleep(3)
        rollout_start = time.monotonic()
        ok_before = loop.ok
        # a config change: the ConfigMap checksum annotation rolls the pods
        upgrade_service("server.logLevel=debug")
        kubectl(
            "-n", NS, "rollout", "status", "deployment/beyondfit", "--timeout=300s", timeout=320
        )
        # the old pods finish their preStop pause, drain and go (the chart gives each
        # terminationGracePeriodSeconds, 35 s): the load keeps running until they are gone
        wait_until(
            "the replaced pods gone",
            lambda: not before & {p["metadata"]["name"] for p in service_pods()},
            timeout=120,
            interval=1,
        )
        rollout_end = time.monotonic()
        ok_during = loop.ok - ok_before
    after = {p["metadata"]["name"] for p in service_pods()}
    assert not before & after, "every pod was replaced"
    assert loop.failures == [], loop.failures[:5]
    # answers kept coming through the whole rollout, not only before it
    assert ok_during > 10 * (rollout_end - rollout_start) / 2, (ok_during, rollout_end)
    assert loop.longest_gap(rollout_start, rollout_end) < 5.0


def test_alias_move_is_served_without_pod_restart(
    mlflow: str, sample_row: dict[str, float]
) -> None:
    url = service_url("beyondfit")
    pods = {p["metadata"]["name"] for p in service_pods()}
    second = train(mlflow, "--C", "0.5", "--force")
    assert second["promoted"]
    with LoadLoop(url, sample_row, threads=1) as loop:
        wait_until(
            "the new version served", lambda: str(second["version"]) in loop.versions, timeout=120
        )
        # every live worker of every Ready pod has swapped (reload interval 5 s)
        wait_until(
            f"every worker of every Ready pod serving only version {second['version']}",
            lambda: all(
                served_versions(p) == {str(second["version"])} for p in service_pods() if ready(p)
            ),
            timeout=120,
            interval=1,
        )
    assert loop.failures == []
    r = httpx.post(f"{url}/predict", json={"instances": [sample_row]}).json()
    assert r["model_version"] == str(second["version"])
    now = service_pods()
    # each Ready pod, each worker (a new connection per request spreads them); a pod the HPA
    # is only now adding has no address yet
    for pod in (p for p in now if ready(p)):
        served = {
            httpx.post(
                f"{pod_url(pod)}/predict", json={"instances": [sample_row]}, timeout=10
            ).json()["model_version"]
            for _ in range(12)
        }
        assert served == {str(second["version"])}, (pod["metadata"]["name"], served)
    # the same pods still serve (the HPA may have added some meanwhile), none restarted
    assert pods <= {p["metadata"]["name"] for p in now}
    assert restarts(now) == 0


def test_hpa_reads_cpu_and_scales_out_under_load(sample_row: dict[str, float]) -> None:
    url = service_url("beyondfit")
    wait_until("the HPA reading CPU", lambda: _hpa_cpu() is not None, timeout=180, interval=5)
    # Earlier load (model loading, the rolling update) may already have scaled out to the
    # local maximum: give the HPA room above what runs now.
    start_pods = int(kubectl_json("-n", NS, "get", "deployment", "beyondfit")["spec"]["replicas"])
    upgrade_service(f"autoscaling.maxReplicas={start_pods + 2}")
    batch = [sample_row] * 200  # bigger requests: CPU on the pods, not on the client
    stop = threading.Event()

    def hammer() -> None:
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):  # only load; failures do not matter here
                    client.post(f"{url}/predict", json={"instances": batch})

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(
            "the HPA to want more replicas",
            lambda: _hpa_desired() > start_pods,
            timeout=240,
            interval=5,
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    wait_until(
        "the new pods Ready",
        lambda: sum(ready(p) for p in service_pods()) > start_pods,
        timeout=300,
        interval=5,
    )
    # every Ready pod answers on its own address
    for pod in service_pods():
        if ready(pod):
            r = httpx.post(
                f"{pod_url(pod)}/predict",
                json={"instances": [sample_row]},
                timeout=10,
            )
            assert r.status_code == 200, r.text


def _hpa() -> dict[str, Any]:
    result: dict[str, Any] = kubectl_json("-n", NS, "get", "hpa", "beyondfit")
    return result


def _hpa_cpu() -> int | None:
    for metric in _hpa().get("status", {}).get("currentMetrics", []) or []:
        resource = metric.get("resource", {})
        if resource.get("name") == "cpu" and "averageUtilization" in resource.get("current", {}):
            return int(resource["current"]["averageUtilization"])
    return None


def _hpa_desired() -> int:
    return int(_hpa().get("status", {}).get("desiredReplicas", 0))


def test_uninstall_leaves_nothing_behind() -> None:
    helm("uninstall", "beyondfit", "--wait", "--timeout", "3m")
    helm("uninstall", "mlflow", "--wait", "--timeout", "3m")
    wait_until("the namespace empty", lambda: not _leftovers(), timeout=180, interval=3)
    assert helm("list", "-q").stdout.strip() == ""
    pvs = kubectl_json("get", "pv")["items"]
    assert not [pv for pv in pvs if pv["spec"].get("claimRef", {}).get("namespace") == NS]


def _leftovers() -> list[str]:
    kinds = "all,configmaps,secrets,pvc,serviceaccounts,poddisruptionbudgets,networkpolicies,hpa"
    out = kubectl("-n", NS, "get", kinds, "-o", "name").stdout.split()
    # the namespace's own default ServiceAccount and root CA ConfigMap belong to Kubernetes
    return [o for o in out if o not in ("serviceaccount/default", "configmap/kube-root-ca.crt")]
