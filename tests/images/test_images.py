"""The container images, built and run for real with podman + runc (no Docker here).

Shows: both images build (on the debootstrap stand-in base when no registry is reachable);
the service image runs as a numeric non-root user with a read-only root filesystem (tmpfs
for /tmp and the metrics directory), becomes healthy through its own HEALTHCHECK, serves a
prediction of a model registered in a real MLflow server, and stops cleanly on SIGTERM: an
in-flight request finishes, the exit code is 0, inside the image's configured grace period
(BEYONDFIT_GRACEFUL_TIMEOUT). The OCI labels carry the build's version, commit and source.
The MLflow image serves the tracking API read-only, and proxies artifacts to a real
S3-compatible store (moto) as charts/mlflow does with artifacts.type=s3.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.images.conftest import (
    REPO,
    Container,
    Images,
    build_images,
    free_port,
    git,
    podman,
    save_tiny_model,
    wait_until,
)
from tests.support.s3 import S3Server

pytestmark = pytest.mark.timeout(900)

# Writable tmpfs where the image needs it. `U` makes podman chown the mount to the image's
# user (podman 4.3 with runc ignores mode=1777 on a tmpfs over an image directory; with
# docker use uid=10001,gid=10001). Kubernetes uses emptyDirs with fsGroup 10001 instead.
TMPFS = ["--tmpfs", "/tmp:rw,U", "--tmpfs", "/run/beyondfit/metrics:rw,U"]


def get(url: str, timeout: float = 5) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - http://127.0.0.1 only
            raw = r.read()
            try:
                return r.status, json.loads(raw or b"null")
            except ValueError:
                return r.status, raw.decode(errors="replace")  # e.g. MLflow's /health: "OK"
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return 0, None


def post(url: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
    req = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http://127.0.0.1 only
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def mlflow_server_args(port: int, artifacts_destination: str, *extra: str) -> list[str]:
    """`mlflow server` arguments as the chart gives them: SQLite on the data volume, artifacts
    proxied by the server to `artifacts_destination`."""
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        "sqlite:////var/lib/mlflow/mlflow.db",
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        *extra,
    ]


def test_both_images_build_and_record_their_sizes(images: Images) -> None:
    for name, size in images.sizes.items():
        print(f"{name}: {size / 1024 / 1024:.0f} MiB")
        assert size > 0
    print(f"build (warm or cold) took {images.build_seconds:.0f} s")


@pytest.mark.parametrize("which", ["service", "mlflow"])
def test_image_metadata(images: Images, which: str) -> None:
    image = getattr(images, which)
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["User"] == "10001:10001"  # numeric, non-root
    assert config["StopSignal"] == "SIGTERM"
    health = info.get("Healthcheck") or config.get("Healthcheck")
    assert health, info
    assert "urllib" in " ".join(health["Test"]), health
    labels = config["Labels"]
    oci = "org.opencontainers.image."

    # version: the chart's appVersion (or BEYONDFIT_IMAGE_TAG), as the build script tags it.
    assert labels[oci + "version"] == images.version == image.rsplit(":", 1)[1]

    # revision: the commit checked out when the image was built, "-dirty" if the tree had
    # changes. Others may commit or edit during the build: any state seen before or after it
    # is the build's, and the dirty flag is only required when it held throughout.
    revision = labels[oci + "revision"]
    sha, dirty_suffix, rest = revision.partition("-dirty")
    assert not rest, revision
    before, after = images.git_before, images.git_after
    assert sha in {before.head, after.head}, (revision, before, after)
    if before.head == after.head and before.dirty == after.dirty:
        assert bool(dirty_suffix) == before.dirty, (revision, before)
    # ... and the image is also tagged with that commit's short hash.
    short = git("rev-parse", "--short", sha)
    tagged = json.loads(podman("image", "inspect", f"{image.rsplit(':', 1)[0]}:{short}").stdout)
    assert tagged[0]["Id"] == info["Id"]

    # source: BEYONDFIT_SOURCE_URL, else the origin remote, else the build script's
    # PROJECT_URL (this checkout has no remote); never empty, never with credentials.
    source = labels[oci + "source"]
    assert source, labels
    assert not re.match(r"^[a-z][a-z0-9+.-]*://[^/]*@", source, re.I), "credentials in source"
    remote = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    if os.environ.get("BEYONDFIT_SOURCE_URL"):
        assert source == os.environ["BEYONDFIT_SOURCE_URL"]
    elif not remote:
        script = (REPO / "scripts" / "build-images.sh").read_text()
        m = re.search(r'^PROJECT_URL="([^"]+)"', script, re.M)
        assert m, "no PROJECT_URL in scripts/build-images.sh"
        assert source == m[1]
    assert re.match(r"^(https?|ssh|git|file)://\S+$|^/\S+$", source), source


def test_a_warm_rebuild_relabels_the_image(images: Images) -> None:
    """Rebuilding with every layer cached but other label values (a new tag and source, as a
    new commit gives a new revision) must carry the new values: buildah reuses a cached
    Dockerfile LABEL layer whatever its ARGs say, so the build script passes --label."""
    name = images.service.rsplit(":", 1)[0]
    short = git("rev-parse", "--short", "HEAD")
    had_short = podman("image", "exists", f"{name}:{short}", check=False).returncode == 0
    previous_short = (
        podman("image", "inspect", "--format", "{{.Id}}", f"{name}:{short}").stdout.strip()
        if had_short
        else ""
    )
    tag = f"relabel-{uuid.uuid4().hex[:8]}"
    source = f"https://example.test/beyondfit/{tag}"
    env = {**os.environ, "BEYONDFIT_IMAGE_TAG": tag, "BEYONDFIT_SOURCE_URL": source}
    try:
        proc = build_images("service", env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        labels = json.loads(podman("image", "inspect", f"{name}:{tag}").stdout)[0]["Config"][
            "Labels"
        ]
        assert labels["org.opencontainers.image.version"] == tag
        assert labels["org.opencontainers.image.source"] == source
    finally:
        # Leave the tags as they were (the script also moved :<short>), then drop the image.
        if previous_short:
            podman("tag", previous_short, f"{name}:{short}", check=False)
        else:
            podman("untag", f"{name}:{tag}", f"{name}:{short}", check=False)
        podman("rmi", f"{name}:{tag}", check=False)


@pytest.mark.parametrize("which", ["service", "mlflow"])
def test_no_build_tools_in_the_final_image(images: Images, which: str) -> None:
    image = getattr(images, which)
    script = (
        "import shutil, os, sys; "
        "found = [t for t in ('gcc', 'cc', 'make', 'curl', 'wget') if shutil.which(t)]; "
        "found += [p for p in ('/opt/venv/bin/pip',) if os.path.exists(p)]; "
        "print(found); sys.exit(1 if found else 0)"
    )
    proc = podman(
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1000:1000",
        "--entrypoint",
        "python3",
        image,
        "-c",
        script,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_service_container_serves_a_registered_model_read_only_and_stops_cleanly(
    images: Images, registered_model: Any, mlflow_server: Any, run_container: Any
) -> None:
    port = free_port()
    # The grace period the image configures (gunicorn's graceful_timeout), not overridden:
    # the container must be gone before it runs out, or gunicorn has SIGKILLed a worker.
    image_env = json.loads(podman("image", "inspect", images.service).stdout)[0]["Config"]["Env"]
    graceful = int(dict(e.split("=", 1) for e in image_env)["BEYONDFIT_GRACEFUL_TIMEOUT"])
    c: Container = run_container(
        images.service,
        port,
        env={
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "BEYONDFIT_PORT": str(port),
            "BEYONDFIT_WORKERS": "2",
            "BEYONDFIT_MAX_BATCH_SIZE": "200000",
            # the in-flight request below is a 20,000-row batch, about 16 MB of JSON: above
            # the default 1 MiB body limit, which would answer 413 and close the connection
            "BEYONDFIT_MAX_BODY_BYTES": str(64 * 1024 * 1024),
            "BEYONDFIT_RELOAD_INTERVAL_SECONDS": "0",
        },
        extra=TMPFS,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Liveness answers at once; readiness once the model is loaded from MLflow.
        wait_until(lambda: get(f"{base}/health")[0] == 200, 90, what="/health")
        ready_after = wait_until(
            lambda: get(f"{base}/health/ready")[0] == 200, 180, what="/health/ready"
        )
        print(f"ready {ready_after:.1f} s after /health")

        # Its own HEALTHCHECK (python + urllib, no curl) passes: podman reports it healthy.
        wait_until(
            lambda: podman("healthcheck", "run", c.name, check=False).returncode == 0,
            60,
            interval=2,
            what="podman healthcheck",
        )
        state = c.inspect()["State"]
        status = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
        assert status == "healthy", state

        # Numeric non-root user, read-only root filesystem, writable tmpfs where needed.
        ids = c.exec(
            "python3", "-c", "import os; print(os.getuid(), os.getgid())", check=True
        ).stdout.split()
        assert ids == ["10001", "10001"]
        assert c.exec("python3", "-c", "open('/opt/beyondfit/x', 'w')").returncode != 0
        assert c.exec("python3", "-c", "open('/etc/x', 'w')").returncode != 0
        assert c.exec("python3", "-c", "open('/tmp/x', 'w')").returncode == 0
        assert c.inspect()["HostConfig"]["ReadonlyRootfs"] is True

        # A prediction of the registered model, over HTTP.
        status_code, model = get(f"{base}/model")
        assert status_code == 200
        assert str(model["version"]) == registered_model.version
        rows = registered_model.X_test.head(5).to_dict(orient="records")
        status_code, out = post(f"{base}/predict", {"instances": rows})
        assert status_code == 200, out
        assert len(out["predictions"]) == 5
        assert str(out["model_version"]) == registered_model.version

        # SIGTERM with a request in flight: a batch big enough to take a while is being
        # processed when the signal arrives; it must still be answered, then exit 0.
        big = (registered_model.X_test.to_dict(orient="records") * 200)[:20000]
        body = json.dumps({"instances": big}).encode()
        result: dict[str, Any] = {}
        sent = threading.Event()

        def in_flight() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request(
                    "POST", "/predict", body=body, headers={"Content-Type": "application/json"}
                )
                sent.set()
                resp = conn.getresponse()
                result["answered_at"] = time.monotonic()
                result["status"] = resp.status
                result["n"] = len(json.loads(resp.read())["predictions"])
            except Exception as e:
                result["error"] = repr(e)
                sent.set()
            finally:
                conn.close()

        worker = threading.Thread(target=in_flight)
        worker.start()
        assert sent.wait(30)
        time.sleep(0.05)
        t0 = time.monotonic()
        podman("kill", "--signal", "TERM", c.name)
        worker.join(120)
        assert result.get("status") == 200, result
        assert result.get("n") == len(big), result
        # It really was in flight: the answer came after the signal.
        assert result["answered_at"] > t0, "the request finished before SIGTERM: make it bigger"
        wait_until(
            lambda: c.inspect()["State"]["Status"] in ("exited", "stopped"),
            graceful + 15,
            interval=0.2,
            what="exit after SIGTERM",
        )
        stopped_after = time.monotonic() - t0
        state = c.inspect()["State"]
        print(
            f"in-flight request of {len(big)} rows answered; "
            f"exited {stopped_after:.1f} s after SIGTERM"
        )
        assert state["ExitCode"] == 0, c.logs()[-3000:]
        # Within the grace period itself (measured from before the signal was sent, so the
        # polling above only makes this stricter), and no worker was killed at its end.
        assert stopped_after < graceful, f"exited {stopped_after:.1f} s after SIGTERM"
        assert result["answered_at"] - t0 < stopped_after
        assert "SIGKILL" not in c.logs()
    except BaseException:
        print(c.logs()[-5000:])
        raise


def get_with_host(url: str, host: str) -> int:
    req = urllib.request.Request(url, headers={"Host": host})  # noqa: S310 - http://127.0.0.1 only
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - http://127.0.0.1 only
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_mlflow_image_serves_the_tracking_api_read_only(images: Images, run_container: Any) -> None:
    """The MLflow image with the arguments charts/mlflow passes: read-only root, SQLite and
    artifacts on a writable mount, --allowed-hosts (service names only), Prometheus metrics."""
    port = free_port()
    c = run_container(
        images.mlflow,
        port,
        env={"MLFLOW_PORT": str(port)},
        extra=[
            "--tmpfs",
            "/tmp:rw,U",
            "--tmpfs",
            "/var/lib/mlflow:rw,U",
            "--tmpfs",
            "/run/mlflow/metrics:rw,U",
        ],
        cmd=mlflow_server_args(
            port,
            "/var/lib/mlflow/artifacts",
            "--allowed-hosts",
            "localhost,localhost:*,127.0.0.1,127.0.0.1:*,mlflow,mlflow:*",
            "--expose-prometheus",
            "/run/mlflow/metrics",
        ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        start = wait_until(lambda: get(f"{base}/health")[0] == 200, 120, what="mlflow /health")
        print(f"MLflow server answered /health {start:.1f} s after start")
        status, body = get(f"{base}/api/2.0/mlflow/experiments/search?max_results=5")
        assert status == 200
        assert body["experiments"][0]["name"] == "Default"
        # The chart's readiness probe: the tracking API with Host: localhost.
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert get_with_host(search, "localhost") == 200
        assert get_with_host(search, f"mlflow:{port}") == 200
        assert get_with_host(search, "evil.example.test") == 403  # DNS-rebinding guard
        assert get_with_host(f"{base}/health", "evil.example.test") == 200  # probes exempt
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert "mlflow_http_request_total" in metrics
        uid = c.exec("python3", "-c", "import os; print(os.getuid())", check=True).stdout.strip()
        assert uid == "10001"
    except BaseException:
        print(c.logs()[-5000:])
        raise


def test_mlflow_image_proxies_artifacts_to_an_s3_compatible_store(
    images: Images, run_container: Any, s3_server: S3Server, tmp_path: Path
) -> None:
    """charts/mlflow with artifacts.type=s3: `--artifacts-destination s3://BUCKET/PREFIX
    --serve-artifacts`, MLFLOW_S3_ENDPOINT_URL and AWS keys in the environment. A client logs
    an artifact and a model through the server (`mlflow-artifacts:/`, never touching S3
    itself); the objects land in the bucket and come back through MLflow byte for byte.
    Without boto3 in the image the server cannot write to S3 and this fails."""
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient

    s3 = s3_server.client()
    bucket = f"beyondfit-artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)

    port = free_port()
    c = run_container(
        images.mlflow,
        port,
        env={"MLFLOW_PORT": str(port), **s3_server.env()},
        extra=["--tmpfs", "/tmp:rw,U", "--tmpfs", "/var/lib/mlflow:rw,U"],
        cmd=mlflow_server_args(port, f"s3://{bucket}/mlflow"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        start = wait_until(lambda: get(f"{base}/health")[0] == 200, 120, what="mlflow /health")
        print(f"MLflow server (S3 artifacts) answered /health {start:.1f} s after start")
        # Fail fast and plainly if the driver is missing (the round trip below would only
        # show the server's 500s after the client's retries).
        probe = c.exec("python3", "-c", "import boto3; print(boto3.__version__)")
        assert probe.returncode == 0, f"no boto3 in {images.mlflow}:\n{probe.stderr[-2000:]}"

        client = MlflowClient(tracking_uri=base)
        exp_id = client.create_experiment(f"s3-artifacts-{uuid.uuid4().hex[:8]}")
        assert client.get_experiment(exp_id).artifact_location == f"mlflow-artifacts:/{exp_id}"
        run_id = client.create_run(exp_id).info.run_id

        # An artifact: random bytes, so only a faithful round trip compares equal.
        payload = os.urandom(300_000)
        upload = tmp_path / "upload"
        upload.mkdir()
        (upload / "payload.bin").write_bytes(payload)
        t0 = time.monotonic()
        client.log_artifact(run_id, str(upload / "payload.bin"))

        # A model: a small scikit-learn classifier, saved locally, logged through the server.
        model, X = save_tiny_model(tmp_path / "model")
        client.log_artifacts(run_id, str(tmp_path / "model"), artifact_path="model")
        client.set_terminated(run_id)
        print(f"logged an artifact and a model through MLflow in {time.monotonic() - t0:.1f} s")

        # The objects really are in the bucket, under the destination prefix.
        prefix = f"mlflow/{exp_id}/{run_id}/artifacts/"
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="mlflow/")
        keys = {o["Key"]: o["Size"] for o in listing.get("Contents", [])}
        print(f"s3://{bucket}: {sorted(keys)}")
        assert keys.get(f"{prefix}payload.bin") == len(payload), keys
        assert f"{prefix}model/MLmodel" in keys, keys
        stored = s3.get_object(Bucket=bucket, Key=f"{prefix}payload.bin")["Body"].read()
        assert stored == payload

        # Back through MLflow's proxy: identical bytes, and a model that predicts the same.
        listed = {a.path for a in client.list_artifacts(run_id)}
        assert {"payload.bin", "model"} <= listed, listed
        download = tmp_path / "download"
        download.mkdir()
        got = client.download_artifacts(run_id, "payload.bin", str(download))
        assert Path(got).read_bytes() == payload
        model_dir = client.download_artifacts(run_id, "model", str(download))
        loaded = mlflow.pyfunc.load_model(model_dir)
        assert np.array_equal(np.asarray(loaded.predict(X)), model.predict(X))
    except BaseException:
        print(c.logs()[-5000:])
        raise
