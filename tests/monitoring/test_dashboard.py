"""The dashboard JSON: generated, schema-valid, every query parses in a real Prometheus."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from monitoring import dashboard as generator
from tests.monitoring.monhelpers import DASHBOARD, Prometheus

# The parts of Grafana's dashboard model this repository relies on (Grafana has no published
# JSON Schema of the dashboard to use offline; this is the subset the panels below use).
DATASOURCE_REF = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
TARGET = {
    "type": "object",
    "required": ["expr", "refId", "datasource"],
    "properties": {
        "expr": {"type": "string", "minLength": 1},
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "legendFormat": {"type": "string"},
        "datasource": DATASOURCE_REF,
    },
}
GRID_POS = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
THRESHOLDS = {
    "type": "object",
    "required": ["mode", "steps"],
    "properties": {
        "mode": {"enum": ["absolute", "percentage"]},
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["color", "value"],
                "properties": {"color": {"type": "string"}, "value": {"type": ["number", "null"]}},
            },
        },
    },
}
DATA_PANEL = {
    "type": "object",
    "required": [
        "id",
        "type",
        "title",
        "description",
        "gridPos",
        "datasource",
        "targets",
        "fieldConfig",
    ],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["timeseries", "stat", "bargauge"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "gridPos": GRID_POS,
        "datasource": DATASOURCE_REF,
        "targets": {"type": "array", "minItems": 1, "items": TARGET},
        "fieldConfig": {
            "type": "object",
            "required": ["defaults"],
            "properties": {
                "defaults": {
                    "type": "object",
                    "required": ["unit", "thresholds"],
                    "properties": {
                        "unit": {"type": "string", "minLength": 1},
                        "thresholds": THRESHOLDS,
                    },
                }
            },
        },
    },
}
ROW_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {"type": {"const": "row"}, "gridPos": GRID_POS, "id": {"type": "integer"}},
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "uid",
        "title",
        "description",
        "panels",
        "templating",
        "time",
        "schemaVersion",
        "tags",
    ],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string"},
        "description": {"type": "string", "pattern": "[Gg]enerated.*make dashboards"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["name", "type", "query"],
                        "properties": {
                            "name": {"const": "datasource"},
                            "type": {"const": "datasource"},
                            "query": {"const": "prometheus"},
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "if": {"properties": {"type": {"const": "row"}}},
                "then": ROW_PANEL,
                "else": DATA_PANEL,
            },
        },
    },
}

# What the dashboard must show (issue 3), by a metric each panel's queries must use.
REQUIRED = {
    "throughput": "http_requests_total",
    "error rate": 'status=~"5.."',
    "latency per route": "http_request_duration_seconds_bucket",
    "inference latency": "model_inference_duration_seconds_bucket",
    "prediction distribution": "model_predictions_total",
    "PSI per feature": "model:feature_psi:",
    "model version": "model_info",
    "reloads": "model_reloads_total",
    "memory per worker": "process_resident_memory_bytes",
    "CPU per worker": "process_cpu_seconds_total",
}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(
    expr: str, job: str = "beyondfit", rate_interval: str = "1m", namespace: str = ".*"
) -> str:
    """What Grafana sends to Prometheus: variables replaced by values (namespace: "All")."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$job", job)
        .replace("$namespace", namespace)
    )


def test_file_is_what_the_generator_writes_now() -> None:
    assert DASHBOARD.read_text() == generator.render(), "run `make dashboards`"


def test_schema(board: dict[str, Any]) -> None:
    jsonschema.validate(board, SCHEMA)


def test_pretty_json() -> None:
    text = DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_unique_panel_ids(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_namespace_and_job_variables_and_selector(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "job"} <= set(variables)
    assert variables["namespace"]["allValue"] == ".*"  # matches series without a namespace
    assert "$namespace" in json.dumps(variables["job"]["query"])  # jobs of those namespaces
    for title, expr in _targets(board):
        assert 'namespace=~"$namespace", job=~"$job"' in expr, (title, expr)


def test_rate_interval_in_every_rate(board: dict[str, Any]) -> None:
    for title, expr in _targets(board):
        windows = re.findall(r"\[([^\]]+)\]", expr)
        if re.search(r"\b(rate|increase|irate)\(", expr):
            assert windows, (title, expr)
        assert all(w == "$__rate_interval" for w in windows), (title, expr)


@pytest.mark.parametrize(("what", "needle"), sorted(REQUIRED.items()))
def test_required_panel(board: dict[str, Any], what: str, needle: str) -> None:
    assert any(needle in expr for _, expr in _targets(board)), f"no panel for {what}"


def test_every_query_parses(board: dict[str, Any], empty_prometheus: Prometheus) -> None:
    """Prometheus 2.42's /api/v1/format_query parses without evaluating."""
    for title, expr in _targets(board):
        answer = empty_prometheus.api("/api/v1/format_query", query=substitute(expr))
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        # And it evaluates (no data here: no targets), which catches e.g. bad matching.
        answer = empty_prometheus.api("/api/v1/query", query=substitute(expr))
        assert answer["status"] == "success", (title, expr, answer.get("error"))


def test_variable_query_parses(board: dict[str, Any], empty_prometheus: Prometheus) -> None:
    job = next(v for v in board["templating"]["list"] if v["name"] == "job")
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", job["query"])
    assert match, job["query"]
    answer = empty_prometheus.api("/api/v1/format_query", query=match.group(1))
    assert answer["status"] == "success", answer
