"""Template unit tests of charts/mlflow, over `helm template` output."""

from __future__ import annotations

import pytest

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

CHART = CHARTS_DIR / "mlflow"
CI = CHART / "ci"
FULLNAME = f"{RELEASE}-mlflow"


def args_of(docs: list[dict]) -> list[str]:
    return container(one(docs, "Deployment"))["args"]


def env_of(docs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(one(docs, "Deployment")).get("env", [])}


def test_defaults_sqlite_and_artifacts_on_a_pvc() -> None:
    docs = render("mlflow")
    args = args_of(docs)
    assert "--backend-store-uri=sqlite:////var/lib/mlflow/mlflow.db" in args
    assert "--artifacts-destination=/var/lib/mlflow/artifacts" in args
    assert "--serve-artifacts" in args
    assert "--workers=1" in args
    pvc = one(docs, "PersistentVolumeClaim")
    d = one(docs, "Deployment")
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert d["spec"]["strategy"]["type"] == "Recreate"  # one writer on SQLite
    assert env_of(docs)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"


def test_storage_class_and_emptydir_for_throwaway_clusters() -> None:
    pvc = one(
        render("mlflow", None, "persistence.storageClass=local-path"), "PersistentVolumeClaim"
    )
    assert pvc["spec"]["storageClassName"] == "local-path"
    docs = render("mlflow", CI / "emptydir-values.yaml")
    assert not find(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_existing_claim_is_used_and_no_pvc_is_rendered() -> None:
    docs = render("mlflow", CI / "existingclaim-values.yaml")
    assert not find(docs, "PersistentVolumeClaim")
    d = one(docs, "Deployment")
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "mlflow-data"},
    }
    mounts = {m["mountPath"]: m["name"] for m in container(d)["volumeMounts"]}
    assert mounts["/var/lib/mlflow"] == "data"
    assert d["spec"]["strategy"]["type"] == "Recreate"  # still one writer on SQLite


def test_service_selects_the_deployment_pods() -> None:
    docs = render("mlflow")
    svc, d = one(docs, "Service"), one(docs, "Deployment")
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert set(svc["spec"]["selector"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert container(d)["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    # The helm test pod reaches the server through this Service.
    test_pod = next(doc for doc in docs if doc["kind"] == "Pod")
    env = {e["name"]: e["value"] for e in test_pod["spec"]["containers"][0]["env"]}
    assert env["BASE_URL"] == f"http://{svc['metadata']['name']}:5000"


def test_allowed_hosts_cover_the_service_names() -> None:
    arg = next(a for a in args_of(render("mlflow")) if a.startswith("--allowed-hosts="))
    hosts = arg.split("=", 1)[1].split(",")
    for name in (
        FULLNAME,
        f"{FULLNAME}.{NAMESPACE}",
        f"{FULLNAME}.{NAMESPACE}.svc",
        f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
        "localhost",
    ):
        assert name in hosts
        assert f"{name}:*" in hosts
    assert "10.*" in hosts  # ClusterIP clients, as MLflow allows by default
    assert "*" not in hosts


def test_postgresql_uri_from_an_existing_secret() -> None:
    docs = render("mlflow", CI / "postgresql-values.yaml")
    args, env = args_of(docs), env_of(docs)
    assert not any(a.startswith("--backend-store-uri") for a in args)  # the URI never sits in args
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-db",
        "key": "uri",
    }
    assert not find(docs, "Secret")
    # Artifacts still on the data volume: the PVC stays, and so does the single writer.
    assert "--artifacts-destination=/var/lib/mlflow/artifacts" in args
    assert one(docs, "PersistentVolumeClaim")
    assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_s3_artifacts_with_keys_from_an_existing_secret() -> None:
    docs = render("mlflow", CI / "s3-values.yaml")
    args, env = args_of(docs), env_of(docs)
    assert "--artifacts-destination=s3://beyondfit-mlflow/artifacts" in args
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.storage.svc:9000"
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert not find(docs, "Secret")
    assert "--backend-store-uri=sqlite:////var/lib/mlflow/mlflow.db" in args


def test_replicas_when_stateless_roll_without_dropping_capacity() -> None:
    docs = render("mlflow", CI / "replicas-values.yaml")
    d = one(docs, "Deployment")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert not find(docs, "PersistentVolumeClaim")
    mounts = {m["mountPath"] for m in container(d)["volumeMounts"]}
    assert "/var/lib/mlflow" not in mounts


def test_pdb() -> None:
    assert not find(render("mlflow"), "PodDisruptionBudget")
    docs = render("mlflow", CI / "pdb-values.yaml")
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )


def test_extra_allowed_hosts_are_appended() -> None:
    arg = next(
        a
        for a in args_of(render("mlflow", CI / "allowedhosts-values.yaml"))
        if a.startswith("--allowed-hosts=")
    )
    hosts = arg.split("=", 1)[1].split(",")
    assert hosts[-2:] == ["mlflow.example.test", "*.mlflow.example.test"]
    assert "localhost" in hosts


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["replicaCount=2"], "replicaCount > 1"),
        (["backendStore.type=postgresql"], "existingSecret"),
        (["artifacts.type=s3"], "destination"),
        (["metrics.serviceMonitor.enabled=true"], "needs metrics.enabled"),
    ],
)
def test_impossible_combinations_fail(sets: list[str], message: str) -> None:
    args = ["template", RELEASE, str(CHART), "--kube-version", K8S_VERSION]
    for s in sets:
        args += ["--set", s]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_probes_and_restricted_security() -> None:
    d = one(render("mlflow"), "Deployment")
    c = container(d)
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    ready = c["readinessProbe"]["httpGet"]
    assert ready["path"].startswith("/api/2.0/mlflow/experiments/search")
    assert ready["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 60
    spec = d["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", "/var/lib/mlflow"} <= mounts


def test_servicemonitor_matches_the_service() -> None:
    assert not find(render("mlflow"), "ServiceMonitor")
    docs = render("mlflow", CI / "metrics-values.yaml")
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert "--expose-prometheus=/run/mlflow/metrics" in args_of(docs)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("backendStore.typ=sqlite", "typ"),
        ("persistence.size=5", "size"),
        ("artifacts.type=gcs", "type"),
        ("podSecurityContext.seLinuxOptions.levle=s0", "levle"),  # typo in a k8s structure
        ("securityContext.seLinuxOptions.usr=system_u", "usr"),
        ("affinity.nodeAffinity.preferred=x", "preferred"),
    ],
)
def test_schema_rejects_typos_and_wrong_types(setting: str, message: str) -> None:
    proc = helm("lint", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert "schema" in (proc.stdout + proc.stderr).lower()
    assert message in proc.stdout + proc.stderr


def test_networkpolicy_admits_the_service_the_trainer_and_prometheus_only() -> None:
    docs = render("mlflow")
    np = one(docs, "NetworkPolicy")
    assert (
        np["spec"]["podSelector"]["matchLabels"]
        == (one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    assert np["spec"]["policyTypes"] == ["Ingress"]
    peers = [rule["from"] for rule in np["spec"]["ingress"]]
    assert peers == [
        [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "beyondfit"}}}],
        [{"podSelector": {"matchLabels": {"beyondfit.io/mlflow-client": "true"}}}],
        [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    ]
    assert all(r["ports"] == [{"port": "http", "protocol": "TCP"}] for r in np["spec"]["ingress"])
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert test_pod["metadata"]["labels"]["beyondfit.io/mlflow-client"] == "true"


def test_auth_off_by_default() -> None:
    docs = render("mlflow")
    assert "--app-name=basic-auth" not in args_of(docs)
    assert not find(docs, "Job")
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env_of(docs)


def test_auth_runs_the_basic_auth_app_with_the_admin_password_from_a_secret() -> None:
    docs = render("mlflow", CI / "auth-values.yaml")
    assert "--app-name=basic-auth" in args_of(docs)
    env = env_of(docs)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-auth",
        "key": "admin-password",
    }
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/run/mlflow-auth/basic_auth.ini"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-auth",
        "key": "flask-secret-key",
    }
    c = container(one(docs, "Deployment"))
    assert c["command"][:2] == ["python3", "-c"]
    assert env["MLFLOW_AUTH_DATABASE_URI"]["value"] == "sqlite:////var/lib/mlflow/basic_auth.db"
    assert env["MLFLOW_AUTH_DEFAULT_PERMISSION"]["value"] == "READ"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["auth-config"] == "/run/mlflow-auth"
    # the readiness probe has no user: it asks /health
    assert container(one(docs, "Deployment"))["readinessProbe"]["httpGet"]["path"] == "/health"
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["beyondfit.io/mlflow-client"] == "true"
    job_env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert job_env["USERS"]["value"] == "beyondfit,trainer"
    assert job_env["PASSWORD_0"]["valueFrom"]["secretKeyRef"]["key"] == "beyondfit-password"
    assert job_env["PASSWORD_1"]["valueFrom"]["secretKeyRef"]["key"] == "trainer-password"
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    test_env = {e["name"] for e in test_pod["spec"]["containers"][0]["env"]}
    assert {"ADMIN_USERNAME", "ADMIN_PASSWORD"} <= test_env


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["auth.enabled=true"], "auth.enabled needs auth.existingSecret"),
        (
            [
                "auth.enabled=true",
                "auth.existingSecret=a",
                "backendStore.type=postgresql",
                "backendStore.existingSecret=db",
                "artifacts.type=s3",
                "artifacts.s3.destination=s3://b/p",
            ],
            "needs auth.databaseUriKey",
        ),
    ],
)
def test_auth_needs_its_secret_and_a_user_store(sets: list[str], message: str) -> None:
    args = ["template", RELEASE, str(CHART), "--kube-version", K8S_VERSION]
    for s in sets:
        args += ["--set", s]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize("env", ["staging", "production"])
def test_staging_and_production_turn_auth_on(env: str) -> None:
    docs = render("mlflow", INVENTORIES / env / "values" / "mlflow.yaml")
    assert "--app-name=basic-auth" in args_of(docs)
    uri = env_of(docs)["MLFLOW_AUTH_DATABASE_URI"]
    assert uri["valueFrom"]["secretKeyRef"] == {"name": "mlflow-auth", "key": "database-uri"}
