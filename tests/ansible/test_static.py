"""Static checks of the playbooks, roles and inventories: every inventory's site.yml and each
playbook parse; every role's inputs pass its argument spec in every inventory (and a wrong
one fails); the vaults are encrypted; the versions the local monitoring stack builds are the
pinned ones. This is all the GKE path gets here: no emulator of the Google APIs exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ansible.conftest import CACHE, INVENTORIES, REPO, ROLES, playbook, tool
from tests.support.versions import pinned_versions

PLAYBOOKS = ["site.yml", *(f"playbooks/{r}.yml" for r in ROLES)]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_syntax_check_of_every_playbook(inventory: str) -> None:
    for book in PLAYBOOKS:
        run = playbook(inventory, book, "--syntax-check", timeout=300)
        assert run.rc == 0, f"{book}: {run}"


def test_site_imports_each_playbook_and_each_playbook_runs_its_role_with_its_tag() -> None:
    site = yaml.safe_load((REPO / "site.yml").read_text())
    assert [p["ansible.builtin.import_playbook"] for p in site] == PLAYBOOKS[1:]
    for role in ROLES:
        (play,) = yaml.safe_load((REPO / f"playbooks/{role}.yml").read_text())
        assert play["tags"] == [role]
        assert [r["role"] for r in play["roles"]] == [role]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_role_input_passes_its_argument_spec(inventory: str) -> None:
    run = playbook(inventory, "tests/ansible/validate_specs.yml", timeout=300)
    assert run.rc == 0, str(run)
    assert run.recap["failed"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("cluster_provider=aks", "value of cluster_provider must be one of"),
        ("monitoring_mode=offline", "value of monitoring_mode must be one of"),
        ('{"model_server_gate_window": "a minute"}', "model_server_gate_window"),
        ('{"cluster_namespaces": ["beyondfit"]}', "cluster_namespaces"),
    ],
)
def test_a_wrong_input_fails_the_argument_spec(extra: str, message: str) -> None:
    run = playbook("production", "tests/ansible/validate_specs.yml", "-e", extra, timeout=300)
    assert run.rc != 0
    assert message in run.out, str(run)


def test_roles_have_defaults_prefixed_with_the_role_name_and_specs_for_all() -> None:
    for role in ROLES:
        root = REPO / "playbooks/roles" / role
        defaults = yaml.safe_load((root / "defaults/main.yml").read_text())
        spec = yaml.safe_load((root / "meta/argument_specs.yml").read_text())
        options = spec["argument_specs"]["main"]["options"]
        assert all(k.startswith(f"{role}_") for k in defaults), role
        assert set(options) == set(defaults), role


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_vault_is_encrypted_and_the_example_password_opens_it(inventory: str) -> None:
    vault = REPO / f"inventories/{inventory}/group_vars/all/vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;example\n")
    view = tool("ansible-vault", "view", str(vault))
    assert view.returncode == 0, view.stderr
    names = [k for k in yaml.safe_load(view.stdout) or {}]
    assert names
    assert all(k.startswith("vault_") for k in names)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_each_environment_has_its_values_in_its_inventory(inventory: str) -> None:
    root = REPO / "inventories" / inventory
    assert sorted(p.name for p in (root / "values").iterdir()) == ["beyondfit.yaml", "mlflow.yaml"]
    group_vars = yaml.safe_load((root / "group_vars/all/vars.yml").read_text())
    assert group_vars["beyondfit_environment"] == inventory
    for role, chart in (("mlflow", "mlflow"), ("model_server", "beyondfit")):
        assert group_vars[f"{role}_values_files"] == [
            f"{{{{ inventory_dir }}}}/values/{chart}.yaml"
        ]
    assert not list((REPO / "charts").glob("*/environments")), "values live only in inventories/"


def test_local_monitoring_builds_the_pinned_versions() -> None:
    versions = pinned_versions()
    build = REPO / "cluster/monitoring-build"
    operator_mod = (build / "operator/go.mod").read_text()
    for module in ("", "/pkg/apis/monitoring", "/pkg/client"):
        pin = f"github.com/prometheus-operator/prometheus-operator{module} "
        pin += versions["PROMETHEUS_OPERATOR_VERSION"]
        assert pin in operator_mod, pin
    # Prometheus 3.x.y is the Go module v0.3xx.y
    major, minor, patch = versions["PROMETHEUS_VERSION"].lstrip("v").split(".")
    module_version = f"v0.{int(major)}{int(minor):02d}.{patch}"
    assert (
        f"github.com/prometheus/prometheus {module_version}\n"
        in (build / "prometheus/go.mod").read_text()
    )
    ksm_mod = (build / "kube-state-metrics/go.mod").read_text()
    assert f"k8s.io/kube-state-metrics/v2 {versions['KUBE_STATE_METRICS_VERSION']}\n" in ksm_mod
    script = (REPO / "scripts/monitoring-images.sh").read_text()
    assert '"prometheus|$PROMETHEUS_VERSION|prometheus:' in script
    # the chart mode pins the kube-prometheus-stack release that runs the same operator
    defaults = (REPO / "playbooks/roles/monitoring/defaults/main.yml").read_text()
    assert re.search(r"runs prometheus-operator v0\.85\.0", defaults)
    assert versions["PROMETHEUS_OPERATOR_VERSION"] == "v0.85.0"


def test_no_plain_secret_in_the_inventories() -> None:
    for path in Path(REPO / "inventories").rglob("*.yml"):
        text = path.read_text()
        if text.startswith("$ANSIBLE_VAULT"):
            continue
        for line in text.splitlines():
            if ":" not in line or line.lstrip().startswith("#"):
                continue
            key, value = (part.strip() for part in line.split(":", 1))
            if any(w in key.lower() for w in ("password", "secret", "token", "api_key", "api-key")):
                assert value in ("", '""') or value.startswith('"{{ vault_'), f"{path}: {line}"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_is_the_controller_only(inventory: str) -> None:
    """The values/ folder beside hosts.yml is Helm values, never read as inventory
    (ansible.cfg inventory_ignore_patterns): the only host is the controller."""
    graph = tool("ansible-inventory", "-i", f"inventories/{inventory}", "--list")
    assert graph.returncode == 0, graph.stderr
    assert "Skipping key" not in graph.stderr, graph.stderr
    inv = json.loads(graph.stdout)
    assert inv["controller"]["hosts"] == ["localhost"]
    assert set(inv["all"]["children"]) <= {"ungrouped", "controller"}
    host = inv["_meta"]["hostvars"]["localhost"]
    assert host["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"


def test_local_monitoring_manifests_are_valid_kubernetes_and_operator_objects(
    tmp_path: Path,
) -> None:
    """The monitoring role's manifests as the local inventory renders them, checked by
    kubeconform -strict against the Kubernetes 1.32 and prometheus-operator CRD schemas
    (scripts/setup-charts.sh generates them): a misspelled field fails here, not on the
    cluster."""
    run = playbook(
        "local", "tests/ansible/render_monitoring.yml", "-e", f"render_dir={tmp_path}", timeout=300
    )
    assert run.rc == 0, str(run)
    docs = "".join(
        "---\n" + (tmp_path / f"{name}.yaml").read_text()
        for name in ("prometheus-operator", "prometheus", "kube-state-metrics", "node-exporter")
    )
    versions = pinned_versions()
    k8s = versions["K8S_VERSION"]
    schemas = CACHE / "schemas"
    crds = schemas / f"prometheus-operator-{versions['PROMETHEUS_OPERATOR_VERSION']}"
    assert (crds / "prometheus-monitoring-v1.json").is_file(), "run scripts/setup-charts.sh"
    proc = subprocess.run(
        [str(CACHE / "bin" / "kubeconform"), "-strict", "-summary", "-output", "text",
         "-kubernetes-version", k8s.lstrip("v"), "-schema-location", str(schemas / f"k8s-{k8s}"),
         "-schema-location", str(crds) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"],
        input=docs, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(docs) if d]
    assert kinds.count("ServiceMonitor") == 4
    assert "Prometheus" in kinds
    prom = next(d for d in yaml.safe_load_all(docs) if d and d["kind"] == "Prometheus")
    for what in ("serviceMonitor", "podMonitor", "probe", "scrapeConfig", "rule"):
        assert prom["spec"][f"{what}Selector"] == {
            "matchLabels": {"release": "kube-prometheus-stack"}
        }
        assert prom["spec"][f"{what}NamespaceSelector"] == {}
    assert prom["spec"]["version"] == versions["PROMETHEUS_VERSION"]
    chart_values = yaml.safe_load((tmp_path / "chart-values.yaml").read_text())
    spec = chart_values["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is True
    assert spec["ruleSelectorNilUsesHelmValues"] is True
    assert chart_values["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
