"""charts/mlflow with authentication on the local cluster: the admin password and the users'
passwords from a Secret, the users made by the chart's Job; an anonymous alias move is
refused, the trainer registers and promotes with its user, the service loads with its
read-only user. Its own namespace, after tests/e2e/test_e2e.py (file order)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.k8s_helpers import KUBECONFIG, kubectl, kubectl_json, run_tool, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NS = "beyondfit-e2e-auth"
CACHE = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit"))
PASSWORDS = {
    "admin-password": "e2e-admin-pass",
    "flask-secret-key": "e2e-flask-secret",
    "beyondfit-password": "e2e-service-pass",
    "trainer-password": "e2e-trainer-pass",
}


def helm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [str(CACHE / "bin" / "helm"), "--kubeconfig", str(KUBECONFIG), "-n", NS]
    return run_tool("helm", argv, *args, check=True, timeout=timeout)


def service_url(name: str) -> str:
    svc = kubectl_json("-n", NS, "get", "service", name)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


@pytest.fixture(scope="module")
def mlflow_with_auth() -> Iterator[str]:
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=300)
    kubectl("create", "namespace", NS)
    kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    kubectl(
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "mlflow-auth",
        *(f"--from-literal={k}={v}" for k, v in PASSWORDS.items()),
    )
    kubectl(
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "mlflow-credentials",
        "--from-literal=username=beyondfit",
        f"--from-literal=password={PASSWORDS['beyondfit-password']}",
    )
    try:
        helm(
            "upgrade",
            "--install",
            "mlflow",
            str(REPO / "charts/mlflow"),
            "-f",
            str(REPO / "inventories/local/values/mlflow.yaml"),
            "--set",
            "auth.enabled=true",
            "--set",
            "auth.existingSecret=mlflow-auth",
            "--set",
            "auth.users.beyondfit=beyondfit-password",
            "--set",
            "auth.users.trainer=trainer-password",
            "--wait",
            "--timeout",
            "8m",
        )
        url = service_url("mlflow")
        wait_until("MLflow /health through its ClusterIP", lambda: _ok(f"{url}/health"))
        yield url
    finally:
        kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def move_alias(url: str, version: str, auth: tuple[str, str] | None) -> int:
    return httpx.post(
        f"{url}/api/2.0/mlflow/registered-models/alias",
        json={"name": "beyondfit-classifier", "alias": "champion", "version": version},
        auth=auth,
        timeout=30,
    ).status_code


def test_anonymous_clients_are_refused_and_the_service_loads_with_its_read_only_user(
    mlflow_with_auth: str,
) -> None:
    url = mlflow_with_auth
    assert httpx.get(f"{url}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 401
    trainer = {
        "MLFLOW_TRACKING_USERNAME": "trainer",
        "MLFLOW_TRACKING_PASSWORD": PASSWORDS["trainer-password"],
    }
    proc = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "training.train", "--json"],
        cwd=REPO,
        env=dict(os.environ, MLFLOW_TRACKING_URI=url, **trainer),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"promoted": true' in proc.stdout
    assert move_alias(url, "1", None) == 401
    assert move_alias(url, "1", ("beyondfit", PASSWORDS["beyondfit-password"])) == 403

    helm(
        "upgrade",
        "--install",
        "beyondfit",
        str(REPO / "charts/beyondfit"),
        "-f",
        str(REPO / "inventories/local/values/beyondfit.yaml"),
        "--set",
        "mlflow.existingSecret=mlflow-credentials",
        "--set",
        "autoscaling.enabled=false",
        "--set",
        "replicaCount=1",
        "--wait",
        "--timeout",
        "8m",
    )
    model = httpx.get(f"{service_url('beyondfit')}/model", timeout=30).json()
    assert (model["version"], model["loader"]) == ("1", "direct")
    helm("uninstall", "beyondfit", "--wait", "--timeout", "3m")
    helm("uninstall", "mlflow", "--wait", "--timeout", "3m")
