"""kubeconform -strict over every rendering, against the Kubernetes schemas of the target
release and the prometheus-operator CRD schemas (generated offline by setup-charts.sh).
No -ignore-missing-schemas: a kind without a schema fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.charts.conftest import CACHE, K8S_VERSION, VERSIONS, cases, render_text, tool

K8S_SCHEMAS = CACHE / "schemas" / f"k8s-v{K8S_VERSION}"
CRD_SCHEMAS = CACHE / "schemas" / f"prometheus-operator-{VERSIONS['PROMETHEUS_OPERATOR_VERSION']}"


def kubeconform(manifests: str) -> subprocess.CompletedProcess[str]:
    assert (
        K8S_SCHEMAS / f"v{K8S_VERSION}-standalone-strict" / "deployment-apps-v1.json"
    ).is_file(), "Kubernetes schemas missing: run scripts/setup-charts.sh"
    assert (CRD_SCHEMAS / "servicemonitor-monitoring-v1.json").is_file(), (
        "CRD schemas missing: run scripts/setup-charts.sh"
    )
    cmd = [
        tool("kubeconform"),
        "-strict",
        "-summary",
        "-output",
        "text",
        "-kubernetes-version",
        K8S_VERSION,
        "-schema-location",
        str(K8S_SCHEMAS),
        "-schema-location",
        str(CRD_SCHEMAS) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
    ]
    return subprocess.run(cmd, input=manifests, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("chart", "values"), cases())
def test_rendered_manifests_are_valid(chart: str, values: Path | None) -> None:
    manifests = render_text(chart, (str(values),) if values else ())
    proc = kubeconform(manifests)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Invalid: 0, Errors: 0" in proc.stdout, proc.stdout
    assert "Skipped: 0" in proc.stdout, proc.stdout


MANIFEST_WITH_TYPO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: x
          image: x:1
          livenessProbes: {}
"""

SERVICEMONITOR_WITH_TYPO = """
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  endpoint: [{port: http}]
"""

UNKNOWN_KIND = """
apiVersion: example.com/v1
kind: NoSuchThing
metadata: {name: x}
"""


@pytest.mark.parametrize(
    "manifest",
    [MANIFEST_WITH_TYPO, SERVICEMONITOR_WITH_TYPO, UNKNOWN_KIND],
    ids=["core-kind-typo", "crd-typo", "kind-without-schema"],
)
def test_schemas_are_strict(manifest: str) -> None:
    """The generated schemas really reject what they must: a misspelled field of a core kind
    and of a CRD, and a kind no schema knows."""
    proc = kubeconform(manifest)
    assert proc.returncode != 0, proc.stdout
