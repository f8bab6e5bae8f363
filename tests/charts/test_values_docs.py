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
    if isinstance(schema.get("items"), dict):
        yield from objects(schema["items"], f"{path}[]")
    for keyword in ("oneOf", "anyOf", "allOf"):
        for i, sub in enumerate(schema.get(keyword, [])):
            yield from objects(sub, f"{path}<{keyword}{i}>")


# An object that accepts any key must say so, and why: "$comment": "open: <reason>".
# A description alone does not count (every object has one).
OPEN_MARKER = re.compile(r"^open: \S.{19,}")


def loose_objects(schema: dict[str, Any]) -> list[str]:
    """Paths of objects that accept any key without an explicit, justified open marker."""
    loose = []
    for path, node in objects(schema):
        if "properties" in node and node.get("additionalProperties") is not False:
            loose.append(path)
        # Maps (labels, annotations, selectors, extraEnv) type their values instead.
        if (
            "properties" not in node
            and node.get("additionalProperties", True) is True
            and not OPEN_MARKER.match(node.get("$comment", ""))
        ):
            loose.append(path)
    return loose


@pytest.mark.parametrize("chart", CHARTS)
def test_schema_is_strict_at_every_object_level(chart: str) -> None:
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    loose = loose_objects(schema)
    assert not loose, f"objects that accept any key: {loose}"


@pytest.mark.parametrize("chart", CHARTS)
def test_open_objects_are_only_the_justified_ones(chart: str) -> None:
    """Today only `global` is open (Helm hands a parent's globals to every subchart)."""
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    marked = [p for p, n in objects(schema) if OPEN_MARKER.match(n.get("$comment", ""))]
    assert marked == ["global"]


def test_strictness_check_needs_the_open_marker_not_a_description() -> None:
    described = {"type": "object", "description": "a Kubernetes structure"}
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "described": described,
            "vague": {**described, "$comment": "open"},
            "in_a_list": {"type": "array", "items": described},
            "typed_map": {"type": "object", "additionalProperties": {"type": "string"}},
            "justified": {**described, "$comment": "open: parent charts put anything here"},
        },
    }
    assert loose_objects(schema) == ["described", "vague", "in_a_list[]"]


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


KUBERNETES_STRUCTURES = {
    "podSecurityContext": {
        "seLinuxOptions": {"level": "s0:c123,c456", "role": "r", "type": "t", "user": "u"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-apparmor"},
    },
    "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [],
        },
        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []},
    },
    "global": {"imageRegistry": "registry.example.test", "anything": {"from": "a parent"}},
}


@pytest.mark.parametrize("chart", CHARTS)
def test_closed_kubernetes_structures_still_take_every_real_field(chart: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())
    values = yaml.safe_load((CHARTS_DIR / chart / "values.yaml").read_text())
    for key, sub in KUBERNETES_STRUCTURES.items():
        values[key] = {**values[key], **sub} if isinstance(values.get(key), dict) else sub
    jsonschema.validate(values, schema)
