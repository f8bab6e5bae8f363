"""The MLflow image with a real PostgreSQL backend store, as charts/mlflow runs it with
backendStore.type=postgresql.

A throwaway PostgreSQL cluster (the Debian server binaries, installed by
scripts/setup-images.sh) runs as the unprivileged postgres user on a free loopback port with
password (SCRAM) authentication over TCP; a database and a login role with a random password
are made for this module only. The MLflow container gets the database URI the way the chart
gives it: the environment variable MLFLOW_BACKEND_STORE_URI (from a Secret in Kubernetes,
from an env file here), never an argument.

Shows: the server becomes healthy on PostgreSQL with a postgresql+psycopg2:// URI (the
driver the image installs); a run with params and metrics, a registered model version and an
alias written through the MLflow client come back through the REST API; the rows really are
in PostgreSQL (read with psql from the host) and no SQLite file was made in the container; a
brand-new container on the same database still serves all of it (the model artifacts live on
a volume, as with the chart's PVC) and can write more.

The last test starts the server with the bare postgresql:// URI that
charts/mlflow/values.yaml shows: SQLAlchemy 2.1 maps it to psycopg 3, also in the image.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images.conftest import (
    Container,
    Images,
    free_port,
    podman,
    save_tiny_model,
    wait_until,
)

pytestmark = pytest.mark.timeout(900)

POSTGRES_LIB = Path("/usr/lib/postgresql")
# The driver the image installs (psycopg2-binary), named in the URI. SQLAlchemy 2.1 maps a
# bare postgresql:// to psycopg 3 instead; see the last test.
PSYCOPG2 = "postgresql+psycopg2"


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian layout)."""
    found = sorted(
        (p for p in POSTGRES_LIB.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail(
            f"no PostgreSQL server under {POSTGRES_LIB}: run scripts/setup-images.sh",
            pytrace=False,
        )
    return found[-1]


@dataclass(frozen=True)
class Postgres:
    """A running throwaway cluster: `user` owns `database` and logs in with `password` over
    TCP on 127.0.0.1:`port`. The password is made at runtime for this module only."""

    bindir: Path
    version: str
    port: int
    database: str
    user: str
    password: str

    def uri(self, scheme: str = "postgresql") -> str:
        """The SQLAlchemy URI; `scheme` may name the driver, e.g. postgresql+psycopg2."""
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def query(self, sql: str, **variables: str) -> list[tuple[str, ...]]:
        """Runs sql with psql over TCP as the MLflow role (password from the environment,
        values as psql variables: `:'name'`); returns the rows as tuples of strings."""
        cmd = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            self.database,
        ]
        for name, value in variables.items():
            cmd += ["-v", f"{name}={value}"]
        cmd += ["-f", "-"]
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="5")
        proc = subprocess.run(
            cmd, input=sql, capture_output=True, text=True, timeout=30, env=env, check=False
        )
        assert proc.returncode == 0, f"psql failed ({proc.returncode}): {proc.stderr}\n{sql}"
        return [tuple(line.split("\t")) for line in proc.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """initdb + postgres as the postgres user (when run as root) in a fresh directory, the
    postmaster in its own session; stopped by its PID (fast shutdown, then SIGKILL of its
    process group) and the directory removed at teardown."""
    bindir = postgres_bindir()
    version = bindir.parent.name
    as_user: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="bf-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sockets, log_path = root / "data", root / "sockets", root / "postgres.log"
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        sockets.mkdir(mode=0o700)
        if as_user:
            os.chown(sockets, as_user["user"], as_user["group"])
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "--no-locale",
                "--encoding=UTF8",
                "--auth-local=peer",  # the superuser: only over the 0700 socket directory
                "--auth-host=scram-sha-256",  # TCP: passwords only
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=root,
            check=False,
            **as_user,
        )
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        superuser = "postgres" if as_user else pwd.getpwuid(os.geteuid()).pw_name

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sockets),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # Throwaway data: no durability needed.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
                **as_user,
            )

        def ready() -> bool:
            assert proc is not None
            if proc.poll() is not None:
                raise AssertionError(
                    f"postgres exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            return (
                subprocess.run(
                    [
                        str(bindir / "pg_isready"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-t",
                        "2",
                    ],
                    capture_output=True,
                    timeout=10,
                    check=False,
                ).returncode
                == 0
            )

        started = wait_until(ready, 60, interval=0.2, what="postgres to accept connections")

        user = f"mlflow_{secrets.token_hex(4)}"
        database = f"mlflow_{secrets.token_hex(4)}"
        password = secrets.token_hex(24)
        # Over the socket as the superuser; the password goes on stdin, not in any argv.
        setup = subprocess.run(
            [
                str(bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(sockets),
                "-p",
                str(port),
                "-U",
                superuser,
                "-d",
                "postgres",
                "-f",
                "-",
            ],
            input=(
                f"CREATE ROLE {user} LOGIN PASSWORD '{password}';\n"
                f"CREATE DATABASE {database} OWNER {user};\n"
            ),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            **as_user,
        )
        assert setup.returncode == 0, setup.stderr
        pg = Postgres(bindir, version, port, database, user, password)
        server_version = pg.query("SHOW server_version;")[0][0]
        print(f"PostgreSQL {server_version} accepting connections {started:.1f} s after start")
        yield pg
    except BaseException:
        if log_path.exists():
            print(log_path.read_text(errors="replace")[-3000:])
        raise
    finally:
        if proc is not None:
            stop_postgres(proc)
        shutil.rmtree(root, ignore_errors=True)


def stop_postgres(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT is PostgreSQL's fast shutdown (what `pg_ctl stop -m fast` sends): clients are
    disconnected and the postmaster exits. SIGKILL to its process group if that takes over
    30 s; then nothing of it is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # any backend that outlived its postmaster


def api(base: str, path: str, **params: str) -> Any:
    r = httpx.get(f"{base}/api/2.0/mlflow/{path}", params=params, timeout=10)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:500]}"
    return r.json()


def backend_store_env(directory: Path, uri: str) -> Path:
    """The Secret's value as the chart hands it to the server: MLFLOW_BACKEND_STORE_URI in
    the environment. An env file (0600) keeps the password out of podman's arguments."""
    env_file = directory / "backend-store.env"
    env_file.touch(mode=0o600)
    env_file.write_text(f"MLFLOW_BACKEND_STORE_URI={uri}\n")
    return env_file


def start_mlflow(
    run_container: Any, images: Images, env_file: Path, artifacts: Path
) -> tuple[Container, str]:
    """The MLflow image with the chart's arguments for backendStore.type=postgresql and a
    data volume for artifacts: no --backend-store-uri, the URI comes from the environment.
    /var/lib/mlflow (the image's WORKDIR, where a default SQLite file would land) is a tmpfs,
    so nothing outside PostgreSQL and the artifact volume survives the container."""
    port = free_port()
    c: Container = run_container(
        images.mlflow,
        port,
        env={"MLFLOW_PORT": str(port)},
        extra=[
            "--env-file",
            str(env_file),
            "--tmpfs",
            "/tmp:rw,U",
            "--tmpfs",
            "/var/lib/mlflow:rw,U",
            "-v",
            f"{artifacts}:/var/lib/mlflow/artifacts:rw,U",
        ],
        cmd=[
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=1",
            "--artifacts-destination=/var/lib/mlflow/artifacts",
            "--serve-artifacts",
            "--allowed-hosts=localhost,localhost:*,127.0.0.1,127.0.0.1:*,mlflow,mlflow:*",
        ],
    )
    return c, f"http://127.0.0.1:{port}"


def wait_mlflow_ready(c: Container, base: str) -> float:
    """Seconds until /health answers; then the chart's readiness probe (the tracking API,
    i.e. the store is reachable) and the image's own HEALTHCHECK pass. Fails at once if the
    container exits."""

    def healthy() -> bool:
        if _status(f"{base}/health") == 200:
            return True
        state = c.inspect()["State"]
        if state["Status"] not in ("created", "running"):
            raise AssertionError(f"the MLflow container exited ({state['ExitCode']})")
        return False

    t = wait_until(healthy, 120, interval=0.5, what="mlflow /health")
    wait_until(
        lambda: _status(f"{base}/api/2.0/mlflow/experiments/search?max_results=1") == 200,
        30,
        what="the tracking API",
    )
    wait_until(
        lambda: podman("healthcheck", "run", c.name, check=False).returncode == 0,
        60,
        interval=2,
        what="podman healthcheck",
    )
    print(f"MLflow on PostgreSQL answered /health {t:.1f} s after start")
    return t


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return 0


def test_mlflow_image_keeps_runs_and_registry_in_postgresql(
    images: Images, postgres: Postgres, run_container: Any, tmp_path: Path
) -> None:
    import mlflow.artifacts
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    env_file = backend_store_env(tmp_path, postgres.uri(PSYCOPG2))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()

    t0 = time.monotonic()
    c, base = start_mlflow(run_container, images, env_file, artifacts)
    try:
        wait_mlflow_ready(c, base)
        # The password is in neither the container's arguments nor its logs.
        info = c.inspect()
        argv = " ".join([info.get("Path", ""), *info.get("Args", [])])
        assert postgres.password not in argv, argv
        assert "--backend-store-uri" not in argv
        assert postgres.password not in c.logs()

        # Write through the MLflow client from the host, as the trainer does.
        client = MlflowClient(tracking_uri=base, registry_uri=base)
        suffix = uuid.uuid4().hex[:8]
        exp_name, model_name = f"pg-{suffix}", f"beyondfit-pg-{suffix}"
        exp_id = client.create_experiment(exp_name)
        run_id = client.create_run(exp_id, run_name="postgres-backend").info.run_id
        now = int(time.time() * 1000)
        params = {"C": "0.5", "solver": "lbfgs", "dataset": "synthetic"}
        accuracy = [0.81, 0.9, 0.95]
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric("accuracy", v, now + i, i) for i, v in enumerate(accuracy)],
        )
        client.set_tag(run_id, "backend", "postgresql")

        model, X = save_tiny_model(tmp_path / "model")
        client.log_artifacts(run_id, str(tmp_path / "model"), artifact_path="model")
        client.set_terminated(run_id)
        artifact_uri = client.get_run(run_id).info.artifact_uri
        client.create_registered_model(model_name, description="PostgreSQL backend test")
        mv = client.create_model_version(model_name, f"{artifact_uri}/model", run_id=run_id)
        client.set_registered_model_alias(model_name, "champion", mv.version)

        # Back through the REST API.
        def check_rest() -> None:
            run = api(base, "runs/get", run_id=run_id)["run"]
            assert run["info"]["status"] == "FINISHED"
            assert {p["key"]: p["value"] for p in run["data"]["params"]} == params
            assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {
                "accuracy": accuracy[-1]
            }
            history = api(base, "metrics/get-history", run_id=run_id, metric_key="accuracy")
            assert [(m["step"], m["value"]) for m in history["metrics"]] == list(
                enumerate(accuracy)
            )
            alias = api(base, "registered-models/alias", name=model_name, alias="champion")
            assert alias["model_version"]["version"] == str(mv.version)
            assert alias["model_version"]["run_id"] == run_id
            assert alias["model_version"]["status"] == "READY"
            reg = api(base, "registered-models/get", name=model_name)["registered_model"]
            assert reg["aliases"] == [{"alias": "champion", "version": str(mv.version)}]

        check_rest()

        # The rows are in PostgreSQL, written by MLflow's own schema (alembic-migrated).
        def check_postgres() -> None:
            assert postgres.query("SELECT version_num FROM alembic_version;")
            assert postgres.query(
                "SELECT name FROM registered_models WHERE name = :'m';", m=model_name
            ) == [(model_name,)]
            stored = postgres.query(
                "SELECT key, value FROM params WHERE run_uuid = :'r';", r=run_id
            )
            assert {key: value for key, value in stored} == params
            rows = postgres.query(
                "SELECT step, value FROM metrics WHERE run_uuid = :'r' AND key = 'accuracy' "
                "ORDER BY step;",
                r=run_id,
            )
            assert [(int(s), float(v)) for s, v in rows] == list(enumerate(accuracy))
            assert postgres.query(
                "SELECT version, run_id FROM model_versions WHERE name = :'m';", m=model_name
            ) == [(str(mv.version), run_id)]
            assert postgres.query(
                "SELECT alias, version FROM registered_model_aliases WHERE name = :'m';",
                m=model_name,
            ) == [("champion", str(mv.version))]
            assert postgres.query(
                "SELECT name FROM experiments WHERE experiment_id = :'e';", e=exp_id
            ) == [(exp_name,)]

        check_postgres()
        # The running server holds its connections to this database as this role.
        connections = postgres.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :'d' AND usename = :'u' "
            "AND pid <> pg_backend_pid();",
            d=postgres.database,
            u=postgres.user,
        )
        assert int(connections[0][0]) >= 1, connections

        # Not silently in SQLite: the container's working directory holds only the artifact
        # volume, and the artifacts are on it.
        listing = c.exec(
            "python3", "-c", "import os; print(sorted(os.listdir('/var/lib/mlflow')))", check=True
        ).stdout.strip()
        assert listing == "['artifacts']", listing
        assert list(artifacts.rglob("MLmodel")), sorted(map(str, artifacts.rglob("*")))
        print(f"first container: written and checked in {time.monotonic() - t0:.1f} s")

        # A new container on the same database: the data lives in PostgreSQL, not in the
        # container. MLflow starts on the already-migrated schema and serves everything.
        podman("rm", "--force", "--time", "10", c.name, timeout=60)
        t1 = time.monotonic()
        c, base = start_mlflow(run_container, images, env_file, artifacts)
        wait_mlflow_ready(c, base)
        print(f"replacement container healthy in {time.monotonic() - t1:.1f} s")
        check_rest()
        client = MlflowClient(tracking_uri=base, registry_uri=base)
        found = client.search_registered_models(filter_string=f"name = '{model_name}'")
        assert [m.name for m in found] == [model_name]
        experiment = client.get_experiment_by_name(exp_name)
        assert experiment is not None
        assert experiment.experiment_id == exp_id

        # The champion's model loads through the new server and predicts as it did.
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(model_name, mv.version),
            dst_path=str(tmp_path / "download"),
            tracking_uri=base,
        )
        loaded = mlflow.pyfunc.load_model(local)
        assert np.array_equal(np.asarray(loaded.predict(X)), model.predict(X))

        # And it writes to the same database.
        client.log_metric(run_id, "accuracy_after_restart", 0.97, step=3)
        assert postgres.query(
            "SELECT value FROM metrics WHERE run_uuid = :'r' AND key = 'accuracy_after_restart';",
            r=run_id,
        ) == [("0.97",)]
        check_postgres()
        listing = c.exec(
            "python3", "-c", "import os; print(sorted(os.listdir('/var/lib/mlflow')))", check=True
        ).stdout.strip()
        assert listing == "['artifacts']", listing
    except BaseException:
        print(c.logs()[-5000:])
        raise


def test_mlflow_image_accepts_the_bare_postgresql_uri_the_chart_documents(
    images: Images, postgres: Postgres, run_container: Any, tmp_path: Path
) -> None:
    """charts/mlflow/values.yaml documents the Secret's URI as postgresql://user:pw@host/db.
    SQLAlchemy 2.1 (requirements/constraints.txt) resolves a bare postgresql:// to the
    psycopg 3 driver, so the image installs psycopg 3 beside psycopg2: both spellings work."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env_file = backend_store_env(tmp_path, postgres.uri("postgresql"))
    c, base = start_mlflow(run_container, images, env_file, artifacts)
    try:
        wait_mlflow_ready(c, base)
    except AssertionError:
        print(c.logs()[-5000:])
        raise
    assert api(base, "experiments/search", max_results="5")["experiments"]
