"""cluster/down.sh leaves nothing behind, and cluster/up.sh brings a warm cluster back fast.

This module runs after test_cluster.py (files run in name order) and ends with the cluster
up again, because the end-to-end layer runs right after this one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cluster.k8s_helpers import NODE_NAME, cluster_is_up, kubectl, run_script

WARM_START_LIMIT_S = 180


def test_down_leaves_nothing_behind_and_a_warm_up_is_quick(cluster: Path) -> None:
    down_s, down = run_script("down.sh", timeout=300)
    assert down.returncode == 0, down.stderr[-4000:]
    _, clean = run_script("verify-clean.sh", timeout=60)
    assert clean.returncode == 0, f"down.sh left things behind:\n{clean.stdout}{clean.stderr}"
    assert not cluster_is_up()
    assert_verify_clean_sees_planted_leftovers()

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


#: Leftovers of the kinds a killed cluster leaves, each planted alone on the clean host, with
#: the command that removes it again.
PLANTED = [
    (["iptables", "-t", "nat", "-N", "KUBE-PLANTED-BY-TEST"],
     ["iptables", "-t", "nat", "-X", "KUBE-PLANTED-BY-TEST"], "KUBE-PLANTED-BY-TEST"),
    (["ip6tables", "-t", "filter", "-N", "KUBE-PLANTED-BY-TEST"],
     ["ip6tables", "-t", "filter", "-X", "KUBE-PLANTED-BY-TEST"], "ip6tables -t filter"),
    (["ip", "link", "add", "bf-cni0", "type", "bridge"],
     ["ip", "link", "del", "bf-cni0"], "interface bf-cni0"),
    (["ip", "netns", "add", "cni-planted-by-test"],
     ["ip", "netns", "del", "cni-planted-by-test"], "netns /run/netns/cni-planted-by-test"),
]  # fmt: skip


def assert_verify_clean_sees_planted_leftovers() -> None:
    """verify-clean.sh must fail, naming it, on each kind of leftover (a check that cannot
    fail would pass down.sh whatever it left)."""
    for plant, remove, named in PLANTED:
        subprocess.run(plant, check=True, capture_output=True)
        try:
            _, found = run_script("verify-clean.sh", timeout=60)
        finally:
            subprocess.run(remove, check=True, capture_output=True)
        assert found.returncode == 1, f"{plant}: not found\n{found.stdout}{found.stderr}"
        reported = [line for line in found.stdout.splitlines() if line.startswith("leftover: ")]
        assert any(named in line for line in reported), found.stdout
    _, clean = run_script("verify-clean.sh", timeout=60)
    assert clean.returncode == 0, clean.stdout
