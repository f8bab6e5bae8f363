"""Template unit tests of charts/beyondfit, over `helm template` output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import (
    CHARTS_DIR,
    INVENTORIES,
    K8S_VERSION,
    NAMESPACE,
    RELEASE,
    container,
    find,
    helm,
    one,
    render,
)

CHART = CHARTS_DIR / "beyondfit"
CI = CHART / "ci"
FULLNAME = f"{RELEASE}-beyondfit"


def deployment(*args: object) -> dict:
    return one(render("beyondfit", *args), "Deployment")


# ---- Deployment: probes, rollout, shutdown, volumes, security --------------------------------


def test_three_probes_cannot_restart_loop_a_slow_model_load() -> None:
    c = container(deployment())
    startup, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
    assert startup["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert ready["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert live["httpGet"] == {"path": "/health", "port": "http"}
    # The startup budget covers a model load of minutes; liveness starts only after it.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # Liveness is conservative: a busy pod gets two minutes before a restart.
    assert live["periodSeconds"] * live["failureThreshold"] >= 120
    assert live["timeoutSeconds"] >= 5


def test_startup_budget_is_configurable() -> None:
    c = container(deployment(None, "probes.startup.failureThreshold=240"))
    assert c["startupProbe"]["failureThreshold"] == 240


def test_rolling_update_never_drops_capacity() -> None:
    spec = deployment()["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_endpoints_drain_before_sigterm() -> None:
    d = deployment()
    c = container(d)
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python3", "-m", "app.drain"]
    pause = int(command[3])
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = one(render("beyondfit"), "ConfigMap")["data"]
    assert pause > 0
    assert grace > pause + int(config["BEYONDFIT_GRACEFUL_TIMEOUT"])


def test_writable_dirs_are_emptydirs_and_root_is_read_only() -> None:
    d = deployment()
    c = container(d)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    config = one(render("beyondfit"), "ConfigMap")["data"]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts[config["PROMETHEUS_MULTIPROC_DIR"]]]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def _restricted(pod_spec: dict, c: dict) -> None:
    psc, sc = pod_spec["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int)
    assert sc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False


def test_restricted_security_context() -> None:
    d = deployment()
    _restricted(d["spec"]["template"]["spec"], container(d))


def test_resources_are_set() -> None:
    res = container(deployment())["resources"]
    assert set(res["requests"]) >= {"cpu", "memory"}
    assert set(res["limits"]) >= {"cpu", "memory"}


def test_config_change_rolls_the_pods() -> None:
    a = deployment()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = deployment(None, "model.reloadIntervalSeconds=7")["spec"]["template"]["metadata"][
        "annotations"
    ]["checksum/config"]
    assert len(a) == 64
    assert a != b


def test_environment_contract() -> None:
    docs = render("beyondfit")
    config = one(docs, "ConfigMap")["data"]
    assert config["BEYONDFIT_MODEL_URI"] == "models:/beyondfit-classifier@champion"
    assert config["BEYONDFIT_PORT"] == "8000"
    assert config["BEYONDFIT_WORKERS"] == "2"
    assert config["MLFLOW_TRACKING_URI"].startswith("http")
    for key in (
        "BEYONDFIT_RELOAD_INTERVAL_SECONDS",
        "BEYONDFIT_MAX_BATCH_SIZE",
        "BEYONDFIT_LOG_LEVEL",
        "BEYONDFIT_GRACEFUL_TIMEOUT",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        assert key in config
    assert config["BEYONDFIT_MODEL_LOADER"] == "auto"
    # every BEYONDFIT_* variable the chart sets is a setting the service reads
    from app.settings import Settings

    settings = {f"BEYONDFIT_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in config if k.startswith("BEYONDFIT_")} - settings
    assert not unknown, unknown
    c = container(one(docs, "Deployment"))
    assert c["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert "env" not in c  # no secrets unless asked for


def test_credentials_only_from_existing_secrets() -> None:
    c = container(deployment(CI / "secrets-values.yaml"))
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-credentials",
        "key": "username",
    }
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-credentials",
        "key": "password",
    }
    assert env["BEYONDFIT_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "beyondfit-api-key",
        "key": "api-key",
    }
    assert all("value" not in e for e in c["env"])
    assert not find(render("beyondfit", CI / "secrets-values.yaml"), "Secret")


def test_image_tag_defaults_to_app_version_and_digest_pins() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(deployment())["image"] == f"localhost/beyondfit:{app_version}"
    pinned = container(deployment(CI / "image-digest-values.yaml"))
    assert pinned["image"] == "registry.example.test/beyondfit@sha256:" + "0" * 64
    assert pinned["imagePullPolicy"] == "Always"


def test_pod_anti_affinity_soft_by_default_and_hard_on_request() -> None:
    selector = deployment()["spec"]["selector"]["matchLabels"]
    soft = deployment()["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = soft["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == selector
    hard = deployment(CI / "antiaffinity-hard-values.yaml")["spec"]["template"]["spec"]
    assert hard["affinity"]["podAntiAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
        ]
    }


def test_topology_spread_gets_the_pod_selector() -> None:
    d = deployment(CI / "topologyspread-values.yaml")
    assert d["spec"]["template"]["spec"]["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": d["spec"]["selector"]["matchLabels"]},
        }
    ]
    assert "topologySpreadConstraints" not in deployment()["spec"]["template"]["spec"]


def test_extra_env_lands_in_the_configmap() -> None:
    config = one(render("beyondfit", CI / "extraenv-values.yaml"), "ConfigMap")["data"]
    assert config["BEYONDFIT_ACCESS_LOG"] == "false"


def test_service_account_has_no_token() -> None:
    docs = render("beyondfit")
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert (
        one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == sa["metadata"]["name"]
    )


# ---- HPA and replicas ------------------------------------------------------------------------


def test_hpa_off_means_replicas_in_deployment() -> None:
    docs = render("beyondfit")
    assert not find(docs, "HorizontalPodAutoscaler")
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_hpa_on_means_no_replicas_in_deployment() -> None:
    docs = render("beyondfit", CI / "hpa-values.yaml")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert "replicas" not in one(docs, "Deployment")["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "http_requests_per_second"
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 60
    assert down["policies"]


def test_hpa_cpu_only_by_default() -> None:
    hpa = one(render("beyondfit", None, "autoscaling.enabled=true"), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]


# ---- PDB, NetworkPolicy, Ingress --------------------------------------------------------------


def test_pdb() -> None:
    assert one(render("beyondfit"), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not find(render("beyondfit", None, "pdb.enabled=false"), "PodDisruptionBudget")
    docs = render("beyondfit", CI / "pdb-values.yaml")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )


def test_networkpolicy_admits_only_listed_clients_and_prometheus() -> None:
    docs = render("beyondfit", CI / "networkpolicy-values.yaml")
    np = one(docs, "NetworkPolicy")
    assert (
        np["spec"]["podSelector"]["matchLabels"]
        == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    peers = [rule["from"] for rule in np["spec"]["ingress"]]
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    for rule in np["spec"]["ingress"]:
        # Prometheus reaches the metrics port only; every client the API port only
        port = "metrics" if rule["from"] == [prometheus] else "http"
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}], rule
    assert [{"podSelector": {"matchLabels": {"beyondfit.io/client": "true"}}}] in peers
    assert [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ] in peers
    assert [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "batch-scorer"}}}] in peers
    assert [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ] in peers
    assert len(peers) == 4  # nothing else; an empty peer would admit everyone
    # The helm test pod is one of the admitted clients.
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert test_pod["metadata"]["labels"]["beyondfit.io/client"] == "true"


def test_default_render_is_closed() -> None:
    """By default: a NetworkPolicy for ingress and egress (DNS and MLflow only), /metrics on
    its own port that only Prometheus may reach, only skops models with the trainer's types,
    and the request limits set."""
    docs = render("beyondfit")
    np = one(docs, "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = np["spec"]["egress"]
    assert len(egress) == 2
    dns, mlflow = egress
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert mlflow["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}]
    assert mlflow["ports"] == [{"port": 5000, "protocol": "TCP"}]
    metrics_rules = [r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == "metrics"]
    assert len(metrics_rules) == 1
    assert metrics_rules[0]["from"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}
    }
    c = container(one(docs, "Deployment"))
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "metrics": 9100}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "http", probe
    svc = one(docs, "Service")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("metrics", 9100, "metrics"),
    ]
    config = one(docs, "ConfigMap")["data"]
    assert config["BEYONDFIT_METRICS_PORT"] == "9100"
    assert config["BEYONDFIT_TRUSTED_TYPES"] == "sklearn.tree._tree.Tree"
    assert config["BEYONDFIT_ALLOW_UNSAFE_MODELS"] == "false"
    assert config["BEYONDFIT_MAX_BODY_BYTES"] == "1048576"
    assert config["BEYONDFIT_HEADER_TIMEOUT_SECONDS"] == "10"
    assert config["BEYONDFIT_BODY_TIMEOUT_SECONDS"] == "30"
    assert config["BEYONDFIT_MAX_CONNECTIONS"] == "1000"


@pytest.mark.parametrize("env", ["local", "minikube", "staging", "production"])
def test_no_environment_trusts_unsafe_models_or_opens_the_network(env: str) -> None:
    docs = render("beyondfit", INVENTORIES / env / "values" / "beyondfit.yaml")
    assert one(docs, "ConfigMap", FULLNAME)["data"]["BEYONDFIT_ALLOW_UNSAFE_MODELS"] == "false"
    assert one(docs, "NetworkPolicy")["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_egress_to_an_artifact_store_and_mlflow_in_another_namespace(tmp_path: Path) -> None:
    values = tmp_path / "egress.yaml"
    values.write_text(
        "networkPolicy:\n  egress:\n    mlflow:\n      namespaceSelector:\n"
        "        matchLabels: {kubernetes.io/metadata.name: mlflow}\n"
        "    extra:\n      s3: {cidr: 52.95.0.0/16, ports: [443]}\n"
    )
    egress = one(render("beyondfit", values), "NetworkPolicy")["spec"]["egress"]
    assert egress[1]["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "mlflow"}
    }
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "52.95.0.0/16"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }


def test_networkpolicy_empty_selector_means_any() -> None:
    """values.yaml: an empty selector map means "any". It must render as {} (a `with` would
    drop it and leave a null peer, which Kubernetes rejects)."""
    np = one(render("beyondfit", CI / "networkpolicy-any-values.yaml"), "NetworkPolicy")
    peers = [rule["from"] for rule in np["spec"]["ingress"]]
    assert None not in [p for rule in peers for p in rule]
    assert [{"namespaceSelector": {}}] in peers
    assert [
        {"namespaceSelector": {"matchLabels": {"team": "analytics"}}, "podSelector": {}}
    ] in peers
    assert [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "batch-scorer"}},
        }
    ] in peers


def test_networkpolicy_peer_without_selectors_fails(tmp_path: Path) -> None:
    """A client with neither selector is refused by the schema, and by the template when the
    schema is skipped, instead of rendering an empty peer."""
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("networkPolicy:\n  enabled: true\n  allowedClients:\n    x: {}\n")
    base = ["template", RELEASE, str(CHART), "-f", str(bad), "--kube-version", K8S_VERSION]
    proc = helm(*base, check=False)
    assert proc.returncode != 0
    assert "allowedClients/x" in proc.stderr, proc.stderr
    proc = helm(*base, "--skip-schema-validation", check=False)
    assert proc.returncode != 0
    assert "networkPolicy.allowedClients.x needs a namespaceSelector or a podSelector" in (
        proc.stderr
    )


def test_ingress() -> None:
    assert not find(render("beyondfit"), "Ingress")
    ing = one(render("beyondfit", CI / "ingress-values.yaml"), "Ingress")
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "beyondfit.example.test"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": FULLNAME,
        "port": {"name": "http"},
    }
    assert ing["spec"]["tls"] == [
        {"hosts": ["beyondfit.example.test"], "secretName": "beyondfit-tls"}
    ]


# ---- Service, ServiceMonitor, rules, dashboards ----------------------------------------------


def test_service_selects_the_deployment_pods() -> None:
    docs = render("beyondfit")
    svc, d = one(docs, "Service"), one(docs, "Deployment")
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert set(svc["spec"]["selector"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert container(d)["ports"][0]["name"] == "http"


def test_servicemonitor_found_by_kube_prometheus_stack_and_matches_the_service() -> None:
    assert not find(render("beyondfit"), "ServiceMonitor")
    docs = render("beyondfit", CI / "monitoring-values.yaml")
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = sm["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics"
    assert "metrics" in [p["name"] for p in svc["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"


def test_release_label_follows_the_prometheus_release() -> None:
    sm = one(
        render(
            "beyondfit",
            CI / "monitoring-values.yaml",
            "serviceMonitor.additionalLabels.release=prom",
        ),
        "ServiceMonitor",
    )
    assert sm["metadata"]["labels"]["release"] == "prom"


RULE_FILES = sorted(
    p
    for p in (CHART / "files" / "rules").glob("*.yaml")
    if not p.name.endswith(("_test.yaml", ".test.yaml"))
)
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))


@pytest.mark.skipif(not RULE_FILES, reason="no rule files in charts/beyondfit/files/rules yet")
def test_prometheusrules_embed_the_rule_files_verbatim() -> None:
    docs = render("beyondfit", CI / "monitoring-values.yaml")
    rules = find(docs, "PrometheusRule")
    assert len(rules) == len(RULE_FILES)
    by_file = {r["metadata"]["annotations"]["beyondfit.io/rule-file"]: r for r in rules}
    for path in RULE_FILES:
        rule = by_file[f"files/rules/{path.name}"]
        assert rule["spec"] == yaml.safe_load(path.read_text()), path.name
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Verbatim: Prometheus template syntax in annotations is not eaten by Helm.
    text = "\n".join(p.read_text() for p in RULE_FILES)
    if "{{" in text:
        rendered = json.dumps([r["spec"] for r in rules])
        assert rendered.count("{{") == json.dumps(
            [yaml.safe_load(p.read_text()) for p in RULE_FILES]
        ).count("{{")


@pytest.mark.skipif(not DASHBOARDS, reason="no dashboards in charts/beyondfit/files/dashboards yet")
def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    docs = render("beyondfit", CI / "monitoring-values.yaml")
    cm = one(docs, "ConfigMap", "-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(cm["data"]) == [p.name for p in DASHBOARDS]
    for p in DASHBOARDS:
        assert json.loads(cm["data"][p.name]) == json.loads(p.read_text())


def test_monitoring_objects_off_by_default() -> None:
    docs = render("beyondfit")
    assert not find(docs, "PrometheusRule")
    assert not find(docs, "ConfigMap", "-dashboards")


# ---- helm test pod --------------------------------------------------------------------------


def test_helm_test_pod_uses_the_service_image_and_is_restricted() -> None:
    docs = render("beyondfit")
    pod = next(d for d in docs if d["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == container(one(docs, "Deployment"))["image"]
    assert c["command"][0] == "python"
    script = c["args"][0]
    for path in ("/health/ready", "/model", "/predict"):
        assert f'"{path}"' in script
    compile(script, "test-connection", "exec")  # the embedded script is valid Python
    _restricted(pod["spec"], c)
    assert c["resources"]["limits"]


# ---- values.schema.json ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCont=3", "replicaCont"),  # misspelled top-level key
        ("autoscaling.maxReplica=3", "maxReplica"),  # misspelled nested key
        ("probes.startup.failureTreshold=5", "failureTreshold"),
        ("replicaCount=two", "replicaCount"),  # wrong type
        ("autoscaling.enabled=yes", "enabled"),
        ("service.type=Headless", "type"),  # not in the enum
        ("model.loader=fast", "loader"),
        ("podSecurityContext.seLinuxOptions.levle=s0", "levle"),  # typo in a k8s structure
        ("securityContext.seLinuxOptions.usr=system_u", "usr"),
        ("securityContext.appArmorProfile.type=Strict", "appArmorProfile/type"),
        ("affinity.podAntiAffinity.requiredDuringScheduling=x", "requiredDuringScheduling"),
    ],
)
def test_schema_rejects_typos_and_wrong_types(setting: str, message: str) -> None:
    for command in ("template", "lint"):
        args = [command, str(CHART), "--set", setting, "--kube-version", K8S_VERSION]
        if command == "template":
            args.insert(1, RELEASE)
        proc = helm(*args, check=False)
        assert proc.returncode != 0, f"helm {command} accepted --set {setting}"
        out = proc.stdout + proc.stderr
        assert "schema" in out.lower(), out
        assert message in out, out


def test_schema_rejects_a_typo_in_a_values_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("serviceMonitor:\n  enabled: true\n  intervall: 10s\n")
    proc = helm("template", RELEASE, str(CHART), "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert "intervall" in proc.stderr
