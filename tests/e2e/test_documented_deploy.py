"""docs/deployment.md's local deployment, run as written on the local cluster: the block is
read from the page at test time, so the page cannot drift from what works. Then
`make deploy-local` (cluster/deploy.sh) upgrades the same release in place.

`bash scripts/test.sh e2e` has just built the images, started the cluster and installed helm
(scripts/setup-e2e.sh), so the block's `make image` is the one line not run again here (a
warm rebuild is a minute of CPU for the same images).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.cluster.k8s_helpers import KUBECONFIG, kubectl
from tests.support.docs import REPO, blocks

pytestmark = pytest.mark.slow

NS = "beyondfit"  # the namespace the page uses
CACHE = os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit")
ALREADY_DONE = {"make image"}


def documented_block() -> list[str]:
    found = [
        b for b in blocks(REPO / "docs/deployment.md") if "inventories/local/values/" in b.text
    ]
    assert len(found) == 1, "deployment.md has one local deployment block"
    return found[0].commands()


def bash(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh bash from the repository root, stopping at the first failure, with
    each command echoed (set -x) so a failure shows where it stopped."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MLFLOW_TRACKING_URI")}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail -x\n" + script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def namespace_exists() -> bool:
    done = kubectl("get", "namespace", NS, "--ignore-not-found", "-o", "name", check=False)
    return bool(done.stdout.strip())


def remove_deployment() -> None:
    helm = f"{CACHE}/bin/helm"
    for release in ("beyondfit", "mlflow"):
        subprocess.run(
            [helm, "--kubeconfig", str(KUBECONFIG), "-n", NS, "uninstall", release, "--wait"],
            capture_output=True,
            timeout=300,
            check=False,
        )
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=300)


@pytest.fixture(scope="module")
def fresh_namespace() -> Iterator[None]:
    if namespace_exists():
        pytest.skip(f"namespace {NS} exists already (your own deployment?): delete it to run this")
    yield
    remove_deployment()
    assert not namespace_exists()


def test_the_documented_local_deployment_runs_as_written(fresh_namespace: None) -> None:
    commands = documented_block()
    assert any(c.startswith("helm test beyondfit") for c in commands)
    script = "\n".join(
        f"echo 'skipped: {c} (scripts/setup-e2e.sh did it)'" if c in ALREADY_DONE else c
        for c in commands
    )
    done = bash(script, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    # the last command asks the service for its model: the one the block registered
    model = json.loads(done.stdout.strip().splitlines()[-1])
    assert model["name"] == "beyondfit-classifier"
    assert str(model["version"]) == "1"
    assert model["alias"] == "champion"
    assert "kube-env: helm and kubectl from" in done.stderr


def test_make_deploy_local_upgrades_it_in_place_and_says_what_it_does(
    fresh_namespace: None,
) -> None:
    done = bash("make deploy-local", timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    out = done.stderr
    for step in (
        "into the cluster's containerd (about 20 s per image)",
        "helm upgrade --install mlflow: waiting",
        "beyondfit-classifier@champion is registered",  # the block above registered it
        "helm upgrade --install beyondfit: waiting",
        "helm test beyondfit",
        "deployed: the service answers at http://",
    ):
        assert step in out, f"{step!r} not in:\n{out[-4000:]}"
