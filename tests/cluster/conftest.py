"""Fixtures for the local-cluster tests: a running cluster (cluster/up.sh), namespaces.

`bash scripts/test.sh cluster` starts the cluster first (scripts/setup-cluster.sh); when
pytest runs these tests directly, the `cluster` fixture starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.k8s_helpers import (
    KUBECONFIG,
    apply,
    cluster_is_up,
    kubectl,
    run_script,
    wait_until,
)


@pytest.fixture(scope="session")
def cluster() -> Path:
    """A running cluster; returns the kubeconfig path."""
    if not cluster_is_up():
        _, proc = run_script("up.sh")
        assert proc.returncode == 0, f"cluster/up.sh failed:\n{proc.stderr[-4000:]}"
    return KUBECONFIG


@pytest.fixture(scope="module")
def restricted_namespace(cluster: Path) -> Iterator[str]:
    """A fresh namespace that enforces the `restricted` Pod Security Standard."""
    name = f"bf-test-{uuid.uuid4().hex[:8]}"
    apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    wait_until(
        "the default ServiceAccount",
        lambda: kubectl("-n", name, "get", "sa", "default", check=False).returncode == 0,
        timeout=30,
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
