"""`helm lint --strict` of every chart: defaults, every ci/ and every environment values file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.charts.conftest import CHARTS_DIR, K8S_VERSION, cases, helm


@pytest.mark.parametrize(("chart", "values"), cases())
def test_helm_lint_strict(chart: str, values: Path | None) -> None:
    args = ["lint", "--strict", "--kube-version", K8S_VERSION, str(CHARTS_DIR / chart)]
    if values:
        args += ["-f", str(values)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    # --strict turns warnings into failures; no [WARNING] or [ERROR] may be left either way.
    assert "[WARNING]" not in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout
