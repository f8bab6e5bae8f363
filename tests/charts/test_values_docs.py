"""values.yaml is documented key by key, and values.schema.json is strict at every level."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CHARTS, CHARTS_DIR


def objects(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if schema.get("type") == "object" or "properties" in schema:
        yield path or "<root>", schema
    for name, sub in schema.get("properties", {}).items():
        yield from objects(sub, f"{path}.{name}".lstrip("."))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from objects(schema["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("chart", CHARTS)
def test_schema_is_strict_at_every_object_level(chart: str) -> None:
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    loose = []
    for path, node in objects(schema):
        if "properties" in node and node.get("additionalProperties") is not False:
            loose.append(path)
        # Maps (labels, annotations, selectors, extraEnv) type their values instead.
        if (
            "properties" not in node
            and node.get("additionalProperties", True) is True
            and "description" not in node
        ):
            loose.append(path)
    assert not loose, f"objects that accept any key: {loose}"


def documented_paths(chart: str) -> tuple[set[str], set[str]]:
    """(key paths in values.yaml, key paths named at the start of a comment)."""
    text = (CHARTS_DIR / chart / "values.yaml").read_text()
    comments = set(re.findall(r"^\s*# ([A-Za-z][\w.]*) -- ", text, flags=re.M))
    values = yaml.safe_load(text)
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    keys: set[str] = set()

    def walk(v: Any, s: dict[str, Any], path: str) -> None:
        if not isinstance(v, dict):
            return
        for k, sub in v.items():
            p = f"{path}.{k}".lstrip(".")
            keys.add(p)
            sub_schema = s.get("properties", {}).get(k, {})
            # Descend only into the chart's own settings; Kubernetes structures (resources,
            # securityContext, selectors) and free maps are documented by their parent.
            if "properties" in sub_schema and k not in PASSTHROUGH:
                walk(sub, sub_schema, p)

    walk(values, schema, "")
    return keys, comments


# Kubernetes structures passed through as they are: documented as a whole by their parent.
PASSTHROUGH = {
    "podSecurityContext",
    "securityContext",
    "resources",
    "affinity",
    "namespaceSelector",
    "podSelector",
}


@pytest.mark.parametrize("chart", CHARTS)
def test_every_value_is_documented_by_a_comment_starting_with_its_name(chart: str) -> None:
    keys, comments = documented_paths(chart)
    missing = sorted(keys - comments)
    assert not missing, f"values.yaml keys without a '# <key> -- ...' comment: {missing}"


@pytest.mark.parametrize("chart", CHARTS)
def test_default_values_pass_the_schema(chart: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((CHARTS_DIR / chart / "values.yaml").read_text()), schema)
