"""Fixtures for the chart tests: real helm, kubeconform and linters over rendered charts.

`bash scripts/test.sh charts` runs scripts/setup-charts.sh first, which installs the tools
pinned in scripts/versions.env into $BEYONDFIT_CACHE/bin and generates the kubeconform
schemas; these tests only use them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.versions import pinned_versions

REPO = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO / "charts"
CHARTS = ("beyondfit", "mlflow")
CACHE = Path(os.environ.get("BEYONDFIT_CACHE", "/var/cache/beyondfit"))
os.environ["PATH"] = f"{CACHE / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


VERSIONS = pinned_versions()
K8S_VERSION = VERSIONS["K8S_VERSION"].lstrip("v")  # the cluster's release: 1.32.x
RELEASE = "demo"
NAMESPACE = "beyondfit"


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run scripts/setup-charts.sh", pytrace=False)
    return path


INVENTORIES = REPO / "inventories"


def values_files(chart: str) -> list[Path]:
    """Every ci/ values file of a chart and every environment's values for it
    (inventories/<env>/values/<chart>.yaml); the default values are `None`."""
    root = CHARTS_DIR / chart
    return sorted(root.glob("ci/*-values.yaml")) + sorted(
        INVENTORIES.glob(f"*/values/{chart}.yaml")
    )


def case_id(chart: str, values: Path) -> str:
    """ci/<feature>-values.yaml -> <chart>-ci-<feature>-values; an environment's values
    -> <chart>-env-<env>."""
    if values.parent.name == "values" and values.parents[1].parent == INVENTORIES:
        return f"{chart}-env-{values.parents[1].name}"
    return f"{chart}-{values.parent.name}-{values.stem}"


def cases() -> list[Any]:
    """(chart, values file or None) for every chart and values file, with readable ids."""
    out = []
    for chart in CHARTS:
        out.append(pytest.param(chart, None, id=f"{chart}-defaults"))
        for f in values_files(chart):
            out.append(pytest.param(chart, f, id=case_id(chart, f)))
    return out


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@functools.cache
def render_text(chart: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    args = [
        "template",
        RELEASE,
        str(CHARTS_DIR / chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        K8S_VERSION,
    ]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return helm(*args).stdout


def render(chart: str, values: Path | str | None = None, *sets: str) -> list[dict[str, Any]]:
    """Rendered manifests (hooks and helm test pods included) as parsed YAML documents."""
    vals = (str(values),) if values else ()
    docs = yaml.safe_load_all(render_text(chart, vals, tuple(sets)))
    return [d for d in docs if d]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [
        d
        for d in find(docs, kind, name_suffix)
        if "helm.sh/hook" not in d["metadata"].get("annotations", {})
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


@pytest.fixture(scope="session")
def versions() -> dict[str, str]:
    return VERSIONS
