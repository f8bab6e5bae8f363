"""kube-score (a real linter, installed by setup-charts.sh) over every rendering.

Tests turned off for every object, and why:
- container-image-pull-policy: kube-score wants `Always`. Local clusters run images imported
  into containerd with no registry to pull from (pullPolicy Never/IfNotPresent); remote
  environments pin the image by tag (or `image.digest`), so `Always` buys nothing there.
- pod-networkpolicy: NetworkPolicies are opt-in (networkPolicy.enabled; on in staging and
  production); the local cluster's CNI does not enforce them. kube-linter's
  non-isolated-pod is excluded for the same reason (.kube-linter.yaml).
Per-object exceptions are `kube-score/ignore` annotations in the templates: the helm test
pods run once and exit, so they have no probes (pod-probes).
Warnings (e.g. the MLflow Deployment's Recreate strategy on SQLite) are reported, not failed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.charts.conftest import cases, render_text, tool

IGNORED = ["container-image-pull-policy", "pod-networkpolicy"]


@pytest.mark.parametrize(("chart", "values"), cases())
def test_kube_score(chart: str, values: Path | None, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(render_text(chart, (str(values),) if values else ()))
    cmd = [tool("kube-score"), "score", "--output-format", "ci", "--kubernetes-version", "v1.32"]
    for test in IGNORED:
        cmd += ["--ignore-test", test]
    proc = subprocess.run([*cmd, str(manifests)], capture_output=True, text=True, timeout=120)
    critical = [line for line in proc.stdout.splitlines() if line.startswith("[CRITICAL]")]
    assert not critical, "\n".join(critical)
    assert proc.returncode == 0, proc.stdout + proc.stderr
