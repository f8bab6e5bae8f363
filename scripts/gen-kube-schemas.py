#!/usr/bin/env python3
"""Generate kubeconform JSON schemas offline (no GitHub here to download them from).

    gen-kube-schemas.py k8s  SWAGGER_JSON     OUT_DIR   # Kubernetes built-in kinds
    gen-kube-schemas.py crds CRD_YAML [...]   OUT_DIR   # CustomResourceDefinitions

Like openapi2jsonschema in its "standalone-strict" flavour: one file per kind and API
version, named the way kubeconform looks them up, `{kind}-{group}-{version}.json` (kind in
lower case, group cut at its first dot, no group for the core API: `service-v1.json`,
`deployment-apps-v1.json`, `servicemonitor-monitoring-v1.json`). Each file stands alone: it
carries the definitions it references (recursive types stay references instead of being
inlined forever). Strict: every object that lists its properties gets
`additionalProperties: false`, so a misspelled field fails validation. Optional fields also
accept null, as the upstream generator does (Helm renders empty maps as null).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

REF_PREFIX = "#/definitions/"


def file_name(kind: str, group: str, version: str) -> str:
    suffix = f"-{group.split('.')[0].lower()}" if group else ""
    return f"{kind.lower()}{suffix}-{version.lower()}.json"


def strictify(node: Any, *, nullable_optionals: bool) -> Any:
    """Adds additionalProperties: false to objects with properties; fixes k8s formats."""
    if isinstance(node, list):
        return [strictify(n, nullable_optionals=nullable_optionals) for n in node]
    if not isinstance(node, dict):
        return node
    node = {
        k: strictify(v, nullable_optionals=nullable_optionals) if k != "enum" else v
        for k, v in node.items()
    }
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        for key in ("type", "format"):
            node.pop(key, None)
        node.setdefault("oneOf", [{"type": "string"}, {"type": "integer"}])
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    if nullable_optionals and isinstance(node.get("properties"), dict):
        required = set(node.get("required", []))
        for name, prop in node["properties"].items():
            if name in required or not isinstance(prop, dict):
                continue
            t = prop.get("type")
            if isinstance(t, str):
                prop["type"] = [t, "null"]
            elif "$ref" in prop:
                node["properties"][name] = {"oneOf": [prop, {"type": "null"}]}
    return node


def refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref[len(REF_PREFIX) :])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def closure(name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    todo, seen = [name], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        found: set[str] = set()
        refs(definitions[n], found)
        todo.extend(found - seen)
    return {n: definitions[n] for n in sorted(seen)}


def k8s(swagger_path: str, out: Path) -> int:
    swagger = json.loads(Path(swagger_path).read_text())
    raw = swagger["definitions"]
    # Quantity is a string in the spec, but YAML writes `cpu: 1` as a number: both are valid.
    for name, d in raw.items():
        if name.endswith(".api.resource.Quantity"):
            raw[name] = {
                "description": d.get("description", ""),
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }
    definitions = {n: strictify(d, nullable_optionals=True) for n, d in raw.items()}
    count = 0
    for name, d in raw.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            kind, group, version = gvk["kind"], gvk.get("group", ""), gvk["version"]
            if kind.endswith("List") or name.startswith("io.k8s.apimachinery.pkg.apis.meta.v1."):
                continue
            defs = copy.deepcopy(closure(name, definitions))
            top = defs[name]
            props = top.get("properties", {})
            api_version = f"{group}/{version}" if group else version
            if "apiVersion" in props:
                props["apiVersion"] = {"type": "string", "enum": [api_version]}
            if "kind" in props:
                props["kind"] = {"type": "string", "enum": [kind]}
            schema = {
                "$schema": "http://json-schema.org/schema#",
                "description": top.get("description", ""),
                "$ref": REF_PREFIX + name,
                "definitions": defs,
            }
            # kubeconform needs apiVersion and kind on every manifest anyway.
            (out / file_name(kind, group, version)).write_text(
                json.dumps(schema, separators=(",", ":"))
            )
            count += 1
    return count


def crds(paths: list[str], out: Path) -> int:
    import yaml  # PyYAML: only needed for CRDs

    class Loader(yaml.SafeLoader):
        pass

    # A bare `=` (e.g. a relabel action enum) resolves to YAML 1.1's `value` tag: keep it a string.
    Loader.add_constructor(
        "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
    )

    count = 0
    for path in paths:
        for doc in yaml.load_all(Path(path).read_text(), Loader=Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for v in spec["versions"]:
                schema = v.get("schema", {}).get("openAPIV3Schema")
                if not schema:
                    continue
                schema = strictify(copy.deepcopy(schema), nullable_optionals=False)
                schema["properties"]["apiVersion"] = {
                    "type": "string",
                    "enum": [f"{group}/{v['name']}"],
                }
                schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
                schema["$schema"] = "http://json-schema.org/schema#"
                (out / file_name(kind, group, v["name"])).write_text(
                    json.dumps(schema, separators=(",", ":"))
                )
                count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("k8s", "crds"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[-1])
    out.mkdir(parents=True, exist_ok=True)
    n = k8s(argv[1], out) if argv[0] == "k8s" else crds(argv[1:-1], out)
    print(f"wrote {n} schemas to {out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
