"""The whole stack on the local Kubernetes cluster, with the images built here and the charts
of this repository. The tests run in file order and build on each other, like a deployment:
MLflow in, a model trained against it, the service in (slowly, with MLflow away for a while),
helm test, a rolling update under load, an alias move, the HPA under load, uninstall.

`bash scripts/test.sh e2e` prepares everything first (scripts/setup-e2e.sh: tools, images,
cluster, images loaded into the cluster's containerd).
"""

from __future__ import annotations

import contextlib
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

from tests.cluster.k8s_helpers import KUBECONFIG, kubectl, kubectl_json, run_tool, wait_until

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
    """Single-row predictions from `threads` threads against the Service until stopped."""

    def __init__(
        self, url: str, row: dict[str, float], threads: int = 2, pause: float = 0.02
    ) -> None:
        self.url, self.row, self.pause = url, row, pause
        self.ok = 0
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.post(f"{self.url}/predict", json={"instances": [self.row]})
                    if r.status_code == 200:
                        self.ok += 1
                        self.versions.add(r.json()["model_version"])
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                time.sleep(self.pause)

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


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
        str(REPO / "charts/mlflow/environments/values-local.yaml"),
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


def test_slow_model_load_does_not_restart_pods_then_they_become_ready(
    mlflow: str, first_model: dict[str, Any]
) -> None:
    # MLflow away while the service starts: pods must stay alive and not ready, never restart.
    kubectl("-n", NS, "scale", "deployment/mlflow", "--replicas=0")
    wait_until("MLflow gone", lambda: not _ok(f"{mlflow}/health"), timeout=120)
    helm(
        "upgrade",
        "--install",
        "beyondfit",
        str(REPO / "charts/beyondfit"),
        "-f",
        str(REPO / "charts/beyondfit/environments/values-local.yaml"),
    )
    wait_until(
        "a service pod running",
        lambda: any(p["status"].get("phase") == "Running" for p in service_pods()),
        timeout=180,
    )
    time.sleep(45)  # several readiness and liveness periods with no model
    pods = service_pods()
    assert pods
    assert not any(ready(p) for p in pods)
    assert restarts(pods) == 0
    kubectl("-n", NS, "scale", "deployment/mlflow", "--replicas=1")
    kubectl("-n", NS, "rollout", "status", "deployment/beyondfit", "--timeout=300s", timeout=320)
    pods = service_pods()
    assert all(ready(p) for p in pods)
    assert restarts(pods) == 0


def test_helm_test_passes_and_the_service_answers_with_the_registered_version(
    first_model: dict[str, Any], sample_row: dict[str, float]
) -> None:
    out = helm("test", "beyondfit", "--timeout", "5m")
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
        # a config change: the ConfigMap checksum annotation rolls the pods
        upgrade_service("server.logLevel=debug")
        kubectl(
            "-n", NS, "rollout", "status", "deployment/beyondfit", "--timeout=300s", timeout=320
        )
        time.sleep(10)  # old pods finish their preStop pause and drain
    after = {p["metadata"]["name"] for p in service_pods()}
    assert not before & after, "every pod was replaced"
    assert loop.failures == [], loop.failures[:5]
    assert loop.ok > 50


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
        time.sleep(8)  # every worker of every pod has swapped (reload interval 5 s)
    assert loop.failures == []
    r = httpx.post(f"{url}/predict", json={"instances": [sample_row]}).json()
    assert r["model_version"] == str(second["version"])
    now = service_pods()
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
                f"http://{pod['status']['podIP']}:8000/predict",
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
