"""The rule files are valid, unit-tested (promtool), complete and documented."""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import dashboard as dashboard_generator
from tests.monitoring.monhelpers import DASHBOARD, REPO_ROOT, RULE_TESTS_DIR, RULES_DIR

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


def _seconds(duration: str) -> int:
    """A Prometheus duration ("90s", "1h30m", "1d") in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
    parts = re.findall(r"(\d+)([smhdwy])", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


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
    """Each alert rule (alert name and severity) has, within one test, a case where it does
    not fire exactly one evaluation interval before a case where it fires: the `for:`
    boundary that alerts_test.yaml works out by hand for each alert."""
    missing = []
    for rule in (r for r in _rules() if "alert" in r):
        alert, severity = rule["alert"], rule["labels"]["severity"]
        boundaries = []
        for path in _test_files():
            content = yaml.safe_load(path.read_text())
            step = _seconds(content.get("evaluation_interval", "1m"))
            for t in content["tests"]:
                quiet, firing = set(), set()
                for case in t.get("alert_rule_test", []):
                    if case["alertname"] != alert:
                        continue
                    severities = {
                        a.get("exp_labels", {}).get("severity")
                        for a in case.get("exp_alerts") or []
                    }
                    assert None not in severities, f"{t['name']}: an expected alert has no severity"
                    (firing if severity in severities else quiet).add(_seconds(case["eval_time"]))
                boundaries += [(t["name"], f) for f in firing if f - step in quiet]
        if not boundaries:
            missing.append(f"{alert} ({severity})")
    assert missing == [], "no test case one evaluation before the alert fires"


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


# A window in a rule name: ratio_rate5m, increase1h, model:feature_psi:1h.
WINDOW_SUFFIX = re.compile(r"(?:rate|increase|:)(\d+[smhdwy])$")


def test_each_window_of_a_recording_rule_is_tested_with_its_own_value() -> None:
    """Rules that differ only in their window ([5m], [1h], ...) are checked in one test at
    one time with a different expected value each: a rule given another window fails."""
    families: dict[str, set[str]] = defaultdict(set)
    for rule in _rules():
        match = WINDOW_SUFFIX.search(rule.get("record", ""))
        if match:
            families[rule["record"][: match.start(1)]].add(rule["record"])
    families = {stem: records for stem, records in families.items() if len(records) > 1}
    assert "namespace_job:http_request_errors:ratio_rate" in families, families
    untested = []
    for stem, records in sorted(families.items()):
        told_apart = False
        for t in _tests():
            # eval_time -> record -> its expected samples, from the cases about one record
            expected: dict[str, dict[str, str]] = defaultdict(dict)
            for case in t.get("promql_expr_test", []):
                hits = [r for r in records if re.search(re.escape(r) + r"(?![\w:])", case["expr"])]
                if len(hits) == 1:
                    samples = sorted((s["labels"], float(s["value"])) for s in case["exp_samples"])
                    expected[case["eval_time"]][hits[0]] = repr(samples)
            told_apart |= any(
                set(values) == records and len(set(values.values())) == len(records)
                for values in expected.values()
            )
        if not told_apart:
            untested.append(stem + "{" + ",".join(sorted(r[len(stem) :] for r in records)) + "}")
    assert untested == [], "windows never given different expected values in one test"


# Thresholds: parsed from the alert expressions, compared with their copies.
COMPARISON = re.compile(r"(>=|<=|==|!=|>|<)\s*\(?\s*(\d+(?:\.\d+)?)(?:\s*\*\s*(\d+(?:\.\d+)?))?")
EXPR_WINDOWS = re.compile(r"\[(\d+[smhd])\]|(?:rate|increase|:)(\d+[smhd])\b")
DOC_WINDOWS = re.compile(r"(?<![\d.])(\d+) ?([smhd])\b")


def _alert_thresholds(expr: str) -> tuple[set[tuple[str, float]], set[float]]:
    """The (operator, threshold) comparisons of an alert expression, and the multiplied
    constants: `> (14.4 * 0.001)` gives ('>', 14.4) and the budget 0.001."""
    comparisons, budgets = set(), set()
    for op, number, budget in COMPARISON.findall(expr):
        comparisons.add((op, float(number)))
        if budget:
            budgets.add(float(budget))
    return comparisons, budgets


def _alert_rule(alert: str, severity: str | None = None) -> dict[str, Any]:
    rules = [
        r
        for r in _rules()
        if r.get("alert") == alert and severity in (None, r["labels"]["severity"])
    ]
    assert len(rules) == 1, (alert, severity)
    return rules[0]


def _thresholds_table() -> dict[tuple[str, str], dict[str, str]]:
    text = MONITORING_DOC.read_text()
    section = text.split("\n## Thresholds\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| Beyondfit")]
    table = {}
    for row in rows:
        alert, severity, fires_when, for_ = (cell.strip() for cell in row.strip("|").split("|"))
        table[alert, severity] = {"fires_when": fires_when, "for": for_}
    return table


def test_thresholds_table_of_the_docs_matches_the_alerts() -> None:
    table = _thresholds_table()
    alerts = {(r["alert"], r["labels"]["severity"]): r for r in _rules() if "alert" in r}
    assert set(table) == set(alerts), "docs/monitoring.md Thresholds: one row per alert rule"
    budgets: set[float] = set()
    for key, rule in alerts.items():
        row = table[key]
        assert row["for"] == rule["for"], key
        comparisons, rule_budgets = _alert_thresholds(rule["expr"])
        budgets |= rule_budgets
        documented = {(op, float(n)) for op, n, _ in COMPARISON.findall(row["fires_when"])}
        # Every documented comparison is the rule's; every non-zero threshold of the rule is
        # documented ("> 0" and "== 0" may be said in words: "a reload", "no prediction").
        assert documented <= comparisons, (key, documented, comparisons)
        assert {c for c in comparisons if c[1] != 0} <= documented, (key, comparisons)
        rule_windows = {a or b for a, b in EXPR_WINDOWS.findall(rule["expr"])}
        doc_windows = {n + u for n, u in DOC_WINDOWS.findall(row["fires_when"])}
        assert doc_windows == rule_windows, (key, doc_windows, rule_windows)
        for quantile in re.findall(r'quantile="([0-9.]+)"', rule["expr"]):
            assert f"p{round(float(quantile) * 100)} " in row["fires_when"], key
    doc_budgets = {
        float(p) / 100
        for row in table.values()
        for p in re.findall(r"budget (\d+(?:\.\d+)?)%", row["fires_when"])
    }
    assert budgets, "no error budget in BeyondfitErrorBudgetBurn"
    assert doc_budgets == budgets, (doc_budgets, budgets)


def _threshold(alert: str, metric: str) -> float:
    """The number the alert compares `metric` with (`metric ... > 0.25`)."""
    expr = _alert_rule(alert)["expr"]
    match = re.search(re.escape(metric) + r"[^\n]*?(?:>=|>)\s*\(?\s*(\d+(?:\.\d+)?)", expr)
    assert match, (alert, metric)
    return float(match.group(1))


def test_dashboard_draws_the_alert_thresholds() -> None:
    latency = _threshold("BeyondfitHighLatency", "http_request_duration_seconds")
    psi = _threshold("BeyondfitFeatureDrift", "model:feature_psi:1h")
    fast_burn, budgets = _alert_thresholds(
        _alert_rule("BeyondfitErrorBudgetBurn", "critical")["expr"]
    )
    (budget,) = budgets
    fast_factor = max(number for _, number in fast_burn)
    assert latency == dashboard_generator.LATENCY_OBJECTIVE_S
    assert psi == dashboard_generator.PSI_ALERT
    assert budget == dashboard_generator.ERROR_BUDGET
    assert fast_factor * budget == pytest.approx(dashboard_generator.FAST_BURN_RATIO)

    # The panels' texts repeat the numbers (the JSON is the generator's output, which
    # test_dashboard.py checks).
    panels = json.loads(DASHBOARD.read_text())["panels"]
    texts = " ".join(p.get("description", "") for p in panels)
    found = {
        "fast burn factor": re.findall(r"(\d+(?:\.\d+)?)x the budget", texts),
        "fast burn %": re.findall(r"(?:x the budget|fast-burn level) \((\d+(?:\.\d+)?)%\)", texts),
        "budget %": re.findall(r"(?<!x )the budget \((\d+(?:\.\d+)?)%\)", texts),
        "psi": re.findall(r"(\d+(?:\.\d+)?): the drift alert's threshold", texts),
        "latency ms": re.findall(r"p95 objective \((\d+(?:\.\d+)?) ms\)", texts),
    }
    assert all(found.values()), found
    expected = {
        "fast burn factor": fast_factor,
        "fast burn %": fast_factor * budget * 100,
        "budget %": budget * 100,
        "psi": psi,
        "latency ms": latency * 1000,
    }
    for name, values in found.items():
        assert [float(v) for v in values] == pytest.approx([expected[name]] * len(values)), name
