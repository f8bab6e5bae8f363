"""kubectl helpers for the local-cluster tests (tests/cluster).

Every call talks to the real API server through the kubeconfig that cluster/up.sh writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.versions import pinned_versions

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO_ROOT / "cluster"
KUBECONFIG = Path(os.environ.get("BEYONDFIT_KUBECONFIG", "/var/lib/beyondfit-cluster/kubeconfig"))
NODE_NAME = "beyondfit-node"
BUSYBOX_IMAGE = "localhost/beyondfit/busybox:1.35.0"

# The container security context that the `restricted` Pod Security Standard asks for.
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def kubectl_binary() -> str:
    """The kubectl that cluster/build.sh built for the pinned release, else the one on PATH."""
    cache = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit"))
    built = cache / "k8s" / pinned_versions().get("K8S_VERSION", "none") / "bin" / "kubectl"
    if built.exists():
        return str(built)
    found = shutil.which("kubectl")
    assert found, "no kubectl: run cluster/build.sh"
    return found


KUBECTL = kubectl_binary()


def run_tool(
    name: str,
    argv: list[str],
    *args: str,
    input_: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs `argv + args`; with check, a failure is an AssertionError naming `name` + args."""
    proc = subprocess.run(
        [*argv, *args], input=input_, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl(
    *args: str, input_: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs kubectl against the local cluster and returns the finished process."""
    argv = [KUBECTL, "--kubeconfig", str(KUBECONFIG)]
    return run_tool("kubectl", argv, *args, input_=input_, check=check, timeout=timeout)


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(manifest: dict[str, Any], namespace: str | None = None) -> None:
    ns = ["-n", namespace] if namespace else []
    kubectl(*ns, "apply", "-f", "-", input_=json.dumps(manifest))


def wait_until(
    what: str, predicate: Callable[[], Any], timeout: float = 120, interval: float = 1.0
) -> Any:
    """Polls predicate until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def cluster_is_up() -> bool:
    if not KUBECONFIG.exists():
        return False
    return kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def run_script(name: str, timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Runs cluster/NAME and returns (seconds, process)."""
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(CLUSTER_DIR / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return time.monotonic() - start, proc
