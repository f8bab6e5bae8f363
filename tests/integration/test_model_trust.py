"""The model trust policy against a real MLflow and real gunicorn: hostile model versions are
registered and the alias moved to each; none runs, each is refused once per worker, and the
version in service keeps answering."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import mlflow
import mlflow.artifacts
import pytest
import skops.io
import yaml

from tests.conftest import RegisteredModel
from tests.support.metrics import sample_value, scrape
from tests.support.procs import MlflowServer, Service

pytestmark = pytest.mark.slow

NAME = "trust-test"


class _Touch:
    """Pickles as `os.system("touch MARKER")`: runs when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def hostile_skops(marker: Path) -> bytes:
    """A skops file whose root object is `os.system("touch MARKER")`."""
    plain = zipfile.ZipFile(io.BytesIO(skops.io.dumps((f"touch {marker}",))))
    args = json.loads(plain.read("schema.json"))
    header = {k: args.pop(k) for k in ("protocol", "_skops_version")}
    root = {
        "__class__": "system",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "content": args,
        "__id__": 1,
        **header,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("schema.json", json.dumps(root))
    return out.getvalue()


def register_dir(model_dir: Path, extra: dict[str, Path] | None = None) -> str:
    """Logs `model_dir` as the artifact `model` of a new run (and each extra file next to
    it) and registers it as a new version of NAME, as anyone with write access could."""
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), "model")
        for where, path in (extra or {}).items():
            mlflow.log_artifact(str(path), where)
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(NAME, source, run_id=run.info.run_id).version)


def edit_mlmodel(model_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    change(mlmodel)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def hostile_versions(good_dir: Path, work: Path, marker: Path) -> dict[str, str]:
    """Registers one hostile version of each kind; returns kind -> version."""
    versions: dict[str, str] = {}

    # 1. cloudpickle: a __reduce__ that runs a command
    d = work / "cloudpickle"
    shutil.copytree(good_dir, d)
    (d / "model.pkl").write_bytes(pickle.dumps(_Touch(marker)))

    def as_cloudpickle(m: dict[str, Any]) -> None:
        m["flavors"]["sklearn"].update(
            pickled_model="model.pkl", serialization_format="cloudpickle"
        )

    edit_mlmodel(d, as_cloudpickle)
    versions["cloudpickle"] = register_dir(d)

    # 2. skops, with its own MLmodel trusting os.system
    d = work / "skops"
    shutil.copytree(good_dir, d)
    flavor_file = yaml.safe_load((d / "MLmodel").read_text())["flavors"]["sklearn"]
    (d / flavor_file["pickled_model"]).write_bytes(hostile_skops(marker))
    edit_mlmodel(d, lambda m: m["flavors"]["sklearn"].update(skops_trusted_types=["os.system"]))
    versions["skops"] = register_dir(d)

    # 3. models-from-code: a pyfunc whose code file runs at load (in any process but this one)
    code = work / "model_code.py"
    code.write_text(
        "import os\n"
        "import mlflow\n"
        f"if os.getpid() != {os.getpid()}:\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "class M(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input):\n"
        "        return [0] * len(model_input)\n"
        "mlflow.models.set_model(M())\n"
    )
    d = work / "from-code"
    signature = yaml.safe_load((good_dir / "MLmodel").read_text())["signature"]
    mlflow.pyfunc.save_model(str(d), python_model=str(code), pip_requirements=["mlflow"])
    edit_mlmodel(d, lambda m: m.update(signature=signature))
    versions["from-code"] = register_dir(d)

    # 4. a file name that leaves the download directory
    d = work / "escape"
    shutil.copytree(good_dir, d)
    pickled = yaml.safe_load((d / "MLmodel").read_text())["flavors"]["sklearn"]["pickled_model"]
    edit_mlmodel(d, lambda m: m["flavors"]["sklearn"].update(pickled_model=f"../escaped/{pickled}"))
    versions["escape"] = register_dir(d, {"escaped": good_dir / pickled})
    return versions


def wait_refused(svc: Service, count: float, timeout: float = 90) -> float | None:
    deadline = time.monotonic() + timeout
    refused = None
    while time.monotonic() < deadline:
        refused = sample_value(scrape(svc.url), "model_reloads_total", result="refused")
        if refused == count:
            return refused
        time.sleep(0.5)
    return refused


def test_hostile_model_versions_never_run_and_the_served_version_keeps_answering(
    tmp_path: Path,
    start_service: Callable[..., Service],
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> None:
    client = mlflow.MlflowClient()
    good_dir = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registered_model.name}/{registered_model.version}",
            dst_path=str(tmp_path / "good"),
        )
    )
    client.create_registered_model(NAME)
    good = register_dir(good_dir)
    client.set_registered_model_alias(NAME, "champion", good)
    marker = tmp_path / "payload-ran"
    versions = hostile_versions(good_dir, tmp_path / "hostile", marker)

    service_tmp = tmp_path / "service-tmp"
    service_tmp.mkdir()
    svc = start_service(BEYONDFIT_MODEL_URI=f"models:/{NAME}@champion", TMPDIR=str(service_tmp))
    svc.wait_ready(180)
    row = {k: float(v) for k, v in registered_model.X_test.iloc[0].items()}
    workers = svc.worker_pids()

    for n, (kind, version) in enumerate(versions.items(), start=1):
        client.set_registered_model_alias(NAME, "champion", version)
        refused = wait_refused(svc, 2 * n)  # once per worker, never retried
        assert refused == 2 * n, (kind, refused, svc.log_text()[-3000:])
        assert not marker.exists(), f"the {kind} payload ran"
        r = httpx.post(f"{svc.url}/predict", json={"instances": [row]}, timeout=30)
        assert r.status_code == 200, (kind, r.text)
        assert r.json()["model_version"] == good
        assert r.headers["x-model-version"] == good

    log = svc.log_text()
    assert "untrusted model" in log
    for reason in ("serialized with cloudpickle", "['os.system']", "no sklearn flavor", "leaves"):
        assert reason in log, reason
    assert not (service_tmp / "escaped").exists()
    assert not list(service_tmp.rglob("*.skops")), "a model file outlived its load"
    assert svc.worker_pids() == workers, "no worker restarted"
    assert sample_value(scrape(svc.url), "model_reloads_total", result="error") in (0, None)
    time.sleep(3)  # a few reload intervals: a refused version is not fetched again
    assert sample_value(scrape(svc.url), "model_reloads_total", result="refused") == 2 * len(
        versions
    )

    # The payloads are real: a service told to trust pickle runs the first one.
    client.set_registered_model_alias(NAME, "champion", versions["cloudpickle"])
    unsafe = start_service(
        BEYONDFIT_MODEL_URI=f"models:/{NAME}@champion", BEYONDFIT_ALLOW_UNSAFE_MODELS="true"
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marker.exists(), unsafe.log_text()[-2000:]


def test_a_model_file_replaced_in_the_artifact_store_is_refused(
    start_service: Callable[..., Service],
    mlflow_server: MlflowServer,
    registered_model: RegisteredModel,
) -> None:
    """The trainer tags each version with the sha256 of its model file; a file swapped in
    the artifact store afterwards (a valid skops model, trusted types only) is refused."""
    from app.registry import DIGEST_TAG, sha256_of
    from training.train import TrainConfig, train

    name = "digest-test"
    first = train(TrainConfig(tracking_uri=mlflow_server.url, model_name=name))
    svc = start_service(BEYONDFIT_MODEL_URI=f"models:/{name}@champion")
    svc.wait_ready(180)
    # a second version under another alias, so the service does not load it yet
    second = train(
        TrainConfig(tracking_uri=mlflow_server.url, model_name=name, C=0.5, alias="candidate")
    )
    client = mlflow.MlflowClient(mlflow_server.url)

    def stored_file(version: int) -> Path:
        uri = client.get_model_version_download_uri(name, str(version))
        return (
            mlflow_server.workdir
            / "artifacts"
            / uri.removeprefix("mlflow-artifacts:/")
            / ("model.skops")
        )

    tag = client.get_model_version(name, str(second.version)).tags[DIGEST_TAG]
    assert tag == sha256_of(stored_file(second.version))
    stored_file(second.version).write_bytes(stored_file(first.version).read_bytes())
    client.set_registered_model_alias(name, "champion", str(second.version))

    refused = wait_refused(svc, 2)
    assert refused == 2, svc.log_text()[-2000:]
    assert "does not match the sha256 the trainer recorded" in svc.log_text()
    row = {k: float(v) for k, v in registered_model.X_test.iloc[0].items()}
    r = httpx.post(f"{svc.url}/predict", json={"instances": [row]}, timeout=30)
    assert r.json()["model_version"] == str(first.version)
