"""The rule files are valid, unit-tested (promtool), complete and documented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.monhelpers import REPO_ROOT, RULE_TESTS_DIR, RULES_DIR

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
MONITORING_DOC = REPO_ROOT / "docs" / "monitoring.md"
RUNBOOK_URL = "https://github.com/beyondfit/beyondfit/blob/main/docs/runbook.md#"


def _rule_files() -> list[Path]:
    files = sorted(RULES_DIR.glob("*.yaml"))
    assert files, f"no rule files in {RULES_DIR}"
    return files


def _test_files() -> list[Path]:
    files = sorted(RULE_TESTS_DIR.glob("*_test.yaml"))
    assert files, f"no promtool test files in {RULE_TESTS_DIR}"
    return files


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in _rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _tests() -> list[dict[str, Any]]:
    return [t for path in _test_files() for t in yaml.safe_load(path.read_text())["tests"]]


def test_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, _rule_files())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", *(p.name for p in _test_files())],
        cwd=RULE_TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    fired = {
        case["alertname"]
        for t in _tests()
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - fired == set(), "alerts without a test that expects them to fire"


def test_every_alert_is_tested_one_step_before_it_fires() -> None:
    """Each alert has a case with no alert, earlier than a case where it fires (the boundary)."""
    for alert in {r["alert"] for r in _rules() if "alert" in r}:
        boundaries = []
        for t in _tests():
            cases = [c for c in t.get("alert_rule_test", []) if c["alertname"] == alert]
            quiet = [c["eval_time"] for c in cases if not c.get("exp_alerts")]
            firing = [c["eval_time"] for c in cases if c.get("exp_alerts")]
            boundaries += [(q, f) for q in quiet for f in firing]
        assert boundaries, f"{alert}: no quiet case next to a firing case"


def test_every_recording_rule_is_unit_tested() -> None:
    exprs = " ".join(case["expr"] for t in _tests() for case in t.get("promql_expr_test", []))
    untested = {
        r["record"]
        for r in _rules()
        if "record" in r and not re.search(re.escape(r["record"]) + r"(?![\w:])", exprs)
    }
    assert untested == set()


def test_psi_recorded_over_at_least_two_windows() -> None:
    windows = {
        r["record"] for r in _rules() if r.get("record", "").startswith("model:feature_psi:")
    }
    assert len(windows) >= 2, windows


@pytest.mark.parametrize("rule", [r for r in _rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alert_is_documented(rule: dict[str, Any]) -> None:
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), f"{rule['alert']} has no {key}"
    assert rule["labels"]["severity"] in {"critical", "warning"}
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"] == RUNBOOK_URL + anchor
    headings = {
        line.lstrip("#").strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    assert anchor in headings, f"docs/runbook.md has no section '## {rule['alert']}'"
    assert rule["alert"] in MONITORING_DOC.read_text(), "not in the thresholds table"
