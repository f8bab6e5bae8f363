"""The local cluster works as a cluster: node, pods, Services, DNS, metrics, admission, storage.

Each test drives the real API server with kubectl; the workload is the tiny busybox image that
cluster/images.sh builds with podman and loads into containerd (no registry).
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.k8s_helpers import (
    BUSYBOX_IMAGE,
    NODE_NAME,
    REPO_ROOT,
    RESTRICTED_CONTAINER,
    apply,
    kubectl,
    kubectl_json,
    wait_until,
)
from tests.support.versions import pinned_versions

WEB_PORT = 8080


def _pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A pod that passes the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": name,
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "securityContext": RESTRICTED_CONTAINER,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    **spec.pop("container", {}),
                }
            ],
            **spec,
        },
    }


def _run_to_completion(namespace: str, pod: dict[str, Any], timeout: float = 90) -> str:
    """Creates a pod, waits until it ends, returns its log; fails if it did not succeed."""
    name = pod["metadata"]["name"]
    apply(pod, namespace)

    def finished() -> str | None:
        phase = kubectl(
            "-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}", check=False
        ).stdout
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(f"pod {name} to finish", finished, timeout=timeout)
    logs = kubectl("-n", namespace, "logs", name).stdout
    assert phase == "Succeeded", f"pod {name} {phase}:\n{logs}"
    return logs


@pytest.fixture(scope="module")
def web(restricted_namespace: str) -> dict[str, str]:
    """A Deployment of busybox httpd behind a ClusterIP Service, in the restricted namespace."""
    ns = restricted_namespace
    pod = _pod(
        "web",
        ["httpd", "-f", "-v", "-p", str(WEB_PORT), "-h", "/www"],
        container={
            "ports": [{"containerPort": WEB_PORT, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
        },
    )
    del pod["spec"]["restartPolicy"]
    apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
            },
        },
        ns,
    )
    apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        ns,
    )
    kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
    cluster_ip = kubectl("-n", ns, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    # A Ready pod is not yet a routed Service: the EndpointSlice update reaches kube-proxy and
    # its iptables sync asynchronously (until then the ClusterIP rejects connections).
    wait_until("kube-proxy routing the ClusterIP", lambda: _answers(cluster_ip))
    return {"namespace": ns, "cluster_ip": cluster_ip}


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def test_node_is_registered_and_ready(cluster: Path) -> None:
    node = kubectl_json("get", "node", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.32.")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    server = kubectl_json("version")["serverVersion"]
    assert server["gitVersion"] == node["status"]["nodeInfo"]["kubeletVersion"]


def test_the_running_release_is_the_pinned_one_built_from_go_mod(cluster: Path) -> None:
    """versions.env names the release, cluster/k8s-build/go.mod requires it, and the API
    server and kubelet report it: a go.mod bump without a versions.env bump (or the reverse)
    fails here instead of running stale cached binaries."""
    pinned = pinned_versions()["K8S_VERSION"]
    go_mod = (REPO_ROOT / "cluster" / "k8s-build" / "go.mod").read_text()
    required = re.search(r"^\s*k8s\.io/kubernetes (v\S+)$", go_mod, re.MULTILINE)
    assert required, "go.mod does not require k8s.io/kubernetes"
    assert required.group(1) == pinned
    assert kubectl_json("version")["serverVersion"]["gitVersion"] == pinned
    node = kubectl_json("get", "node", NODE_NAME)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == pinned


def test_rbac_and_node_restriction_are_enforced(cluster: Path) -> None:
    """--authorization-mode=Node,RBAC and the NodeRestriction admission plugin, shown by what
    they deny (AlwaysAllow or a missing plugin would allow both)."""
    anyone = "system:serviceaccount:default:default"
    can = kubectl("auth", "can-i", "list", "secrets", "-n", "kube-system", "--as", anyone,
                  check=False)  # fmt: skip
    assert can.returncode == 1, can.stdout + can.stderr
    assert can.stdout.split()[0] == "no", can.stdout + can.stderr
    assert kubectl("auth", "can-i", "list", "secrets", "-n", "kube-system").stdout.strip() == "yes"
    as_node = ["--as", f"system:node:{NODE_NAME}", "--as-group", "system:nodes"]
    node_secrets = kubectl("auth", "can-i", "list", "secrets", "-A", *as_node, check=False)
    # the Node authorizer says why: "no - can only read namespaced object of this type"
    assert node_secrets.returncode == 1, node_secrets.stdout + node_secrets.stderr
    assert node_secrets.stdout.split()[0] == "no", "the Node authorizer lets a kubelet list secrets"
    label = "node-restriction.kubernetes.io/planted-by-test=x"
    relabel = kubectl("label", "node", NODE_NAME, label, *as_node, check=False)
    assert relabel.returncode != 0, "NodeRestriction let the kubelet set a restricted label"
    assert "forbidden" in relabel.stderr
    assert "node-restriction.kubernetes.io/planted-by-test" in relabel.stderr


def test_pod_runs_under_restricted_pod_security(web: dict[str, str]) -> None:
    pods = kubectl_json("-n", web["namespace"], "get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    assert pod["status"]["podIP"].startswith("10.244."), "pod IP from the CNI bridge range"
    labels = kubectl_json("get", "namespace", web["namespace"])["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pod_security_rejects_a_privileged_pod(restricted_namespace: str) -> None:
    pod = _pod("privileged", ["sleep", "1"])
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    proc = kubectl(
        "-n", restricted_namespace, "apply", "-f", "-", input_=json.dumps(pod), check=False
    )
    assert proc.returncode != 0, "a privileged pod was admitted into a restricted namespace"
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr
    assert "privileged" in proc.stderr


def test_cluster_ip_service_routes_from_the_host(web: dict[str, str]) -> None:
    with urllib.request.urlopen(f"http://{web['cluster_ip']}/", timeout=10) as resp:
        assert resp.status == 200
        assert "hello from beyondfit busybox" in resp.read().decode()


def test_service_dns_name_resolves_and_routes_from_a_pod(web: dict[str, str]) -> None:
    ns = web["namespace"]
    fqdn = f"web.{ns}.svc.cluster.local"
    logs = _run_to_completion(
        ns,
        _pod(
            "client",
            [
                "sh",
                "-c",
                f"nslookup {fqdn} && wget -qO- http://web/ && "
                "wget -qO- --no-check-certificate https://kubernetes.default.svc/healthz && "
                "echo ' api-reachable'",
            ],
        ),
    )
    assert web["cluster_ip"] in logs, f"{fqdn} did not resolve to the ClusterIP:\n{logs}"
    assert "hello from beyondfit busybox" in logs
    assert "api-reachable" in logs


def test_metrics_api_reports_cpu(web: dict[str, str]) -> None:
    def node_cpu() -> str | None:
        proc = kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE_NAME}", check=False
        )
        if proc.returncode != 0:
            return None
        cpu: str | None = json.loads(proc.stdout)["usage"].get("cpu")
        return cpu

    assert wait_until("node CPU metrics", node_cpu, timeout=120, interval=3)
    top = kubectl("top", "node", NODE_NAME, "--no-headers").stdout.split()
    assert top[0] == NODE_NAME, top
    assert top[1].endswith("m"), f"CPU in millicores: {top}"
    pod_top = wait_until(
        "pod CPU metrics",
        lambda: kubectl("-n", web["namespace"], "top", "pod", "--no-headers", check=False).stdout,
        timeout=120,
        interval=3,
    )
    assert pod_top.startswith("web-"), pod_top


def test_default_storage_class_provisions_a_volume(restricted_namespace: str) -> None:
    ns = restricted_namespace
    classes = kubectl_json("get", "storageclass")["items"]
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == ["local-path"]
    apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Mi"}},
            },
        },
        ns,
    )
    logs = _run_to_completion(
        ns,
        _pod(
            "writer",
            ["sh", "-c", "echo persisted > /data/file && cat /data/file"],
            container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        ),
        timeout=120,
    )
    assert "persisted" in logs
    phase = kubectl("-n", ns, "get", "pvc", "data", "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Bound"
