"""cluster/down.sh leaves nothing behind, and cluster/up.sh brings a warm cluster back fast.

This module runs after test_cluster.py (files run in name order) and ends with the cluster
up again, because the end-to-end layer runs right after this one.
"""

from __future__ import annotations

from pathlib import Path

from tests.cluster.k8s_helpers import NODE_NAME, cluster_is_up, kubectl, run_script

WARM_START_LIMIT_S = 180


def test_down_leaves_nothing_behind_and_a_warm_up_is_quick(cluster: Path) -> None:
    down_s, down = run_script("down.sh", timeout=300)
    assert down.returncode == 0, down.stderr[-4000:]
    _, clean = run_script("verify-clean.sh", timeout=60)
    assert clean.returncode == 0, f"down.sh left things behind:\n{clean.stdout}{clean.stderr}"
    assert not cluster_is_up()

    up_s, up = run_script("up.sh", timeout=900)
    assert up.returncode == 0, up.stderr[-4000:]
    assert up.stdout.strip().splitlines()[-1] == str(cluster), "up.sh prints the kubeconfig"
    assert cluster_is_up()
    ready = kubectl(
        "get", "node", NODE_NAME, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    ).stdout
    assert ready == "True"
    print(f"down {down_s:.1f}s, warm up {up_s:.1f}s")
    assert up_s < WARM_START_LIMIT_S, f"warm start took {up_s:.0f}s:\n{up.stderr[-2000:]}"

    again_s, again = run_script("up.sh", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already up" in again.stderr
    assert again_s < 15, f"up.sh on a running cluster took {again_s:.1f}s"
