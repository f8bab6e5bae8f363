"""app.registry reads real MLflow model directories (written by mlflow.sklearn.save_model)
exactly as MLflow's own loader does, under the service's trust policy: skops only, with the
service's trusted types; everything else is refused unless the unsafe switch is on."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from mlflow.models import infer_signature
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from app.registry import (
    NeedsMlflowError,
    RegistryError,
    RestRegistry,
    TrustPolicy,
    UntrustedModelError,
    files_to_fetch,
    inside,
    load_sklearn,
    read_mlmodel,
)
from app.schema import input_schema

SAFE = TrustPolicy()
UNSAFE = TrustPolicy(allow_unsafe=True)


@pytest.fixture(scope="module")
def wine() -> tuple[Any, pd.DataFrame]:
    X, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return model, X


def _save(path: Path, model: Any, X: pd.DataFrame, **kwargs: Any) -> Path:
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        input_example=X.head(3),
        pip_requirements=["scikit-learn"],
        **kwargs,
    )
    return path


@pytest.mark.parametrize("serialization", ["skops", "cloudpickle", "pickle"])
def test_a_saved_sklearn_model_loads_like_mlflow_loads_it(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame], serialization: str
) -> None:
    model, X = wine
    path = _save(tmp_path / "m", model, X, serialization_format=serialization)
    mlmodel = read_mlmodel(path / "MLmodel")
    if serialization != "skops":
        # pickle runs code when loaded: refused before the file is fetched or opened
        with pytest.raises(UntrustedModelError, match=f"serialized with {serialization}"):
            files_to_fetch(mlmodel, SAFE)
        with pytest.raises(UntrustedModelError, match="BEYONDFIT_ALLOW_UNSAFE_MODELS"):
            load_sklearn(path, mlmodel, SAFE)

    loaded = load_sklearn(path, mlmodel, SAFE if serialization == "skops" else UNSAFE)

    reference = mlflow.sklearn.load_model(str(path))
    assert np.array_equal(loaded.estimator.predict_proba(X), reference.predict_proba(X))
    assert np.array_equal(loaded.estimator.predict(X), mlflow.pyfunc.load_model(path).predict(X))
    assert loaded.example_rows == X.head(3).to_dict(orient="records")
    schema = input_schema(loaded.signature, 10)
    assert schema.names == list(X.columns)
    via_mlflow = input_schema(mlflow.pyfunc.load_model(path).metadata.signature, 10)
    assert schema.columns == via_mlflow.columns
    assert schema.json_schema() == via_mlflow.json_schema()
    policy = SAFE if serialization == "skops" else UNSAFE
    assert files_to_fetch(mlmodel, policy)[0] == mlmodel["flavors"]["sklearn"]["pickled_model"]
    assert "input_example.json" in files_to_fetch(mlmodel, policy)


def test_skops_trusted_types_come_from_the_service_not_the_mlmodel(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame]
) -> None:
    # A tree carries a type skops does not trust by default; the trainer needs it, so it is
    # in the service's default list. The list MLflow wrote into MLmodel is never consulted.
    _, X = wine
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, load_wine().target)
    path = _save(tmp_path / "tree", tree, X, skops_trusted_types=["sklearn.tree._tree.Tree"])
    mlmodel = read_mlmodel(path / "MLmodel")
    loaded = load_sklearn(path, mlmodel, SAFE)
    assert np.array_equal(loaded.estimator.predict(X), tree.predict(X))
    with pytest.raises(UntrustedModelError, match=r"sklearn\.tree\._tree\.Tree"):
        load_sklearn(path, mlmodel, TrustPolicy(trusted_types=()))


def _hostile_skops(marker: Path) -> bytes:
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


def test_a_skops_file_that_trusts_os_system_in_its_own_mlmodel_is_refused(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame]
) -> None:
    model, X = wine
    path = _save(tmp_path / "m", model, X)
    marker = tmp_path / "executed"
    mlmodel = read_mlmodel(path / "MLmodel")
    flavor = mlmodel["flavors"]["sklearn"]
    (path / flavor["pickled_model"]).write_bytes(_hostile_skops(marker))
    flavor["skops_trusted_types"] = ["os.system"]
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(UntrustedModelError, match=r"does not trust: \['os.system'\]"):
        load_sklearn(path, read_mlmodel(path / "MLmodel"), SAFE)
    assert not marker.exists()
    # the payload is real: a service that trusts the model's own list runs it
    load_sklearn(path, read_mlmodel(path / "MLmodel"), UNSAFE)
    assert marker.exists()


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("pickled_model", "../../escaped.skops"),
        ("pickled_model", "/etc/passwd"),
        ("pickled_model", "sub/../../x"),
        ("example", "../input_example.json"),
        ("example", "/tmp/input_example.json"),
    ],
)
def test_file_names_that_leave_the_model_directory_are_refused(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame], key: str, name: str
) -> None:
    model, X = wine
    path = _save(tmp_path / "m", model, X)
    mlmodel = read_mlmodel(path / "MLmodel")
    if key == "pickled_model":
        mlmodel["flavors"]["sklearn"]["pickled_model"] = name
    else:
        mlmodel["saved_input_example_info"]["artifact_path"] = name
    with pytest.raises(UntrustedModelError, match=r"not a relative path|leaves the model"):
        files_to_fetch(mlmodel, SAFE)
    with pytest.raises(UntrustedModelError):
        load_sklearn(path, mlmodel, SAFE)


def test_a_symlink_out_of_the_model_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.skops").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UntrustedModelError, match="leaves the model"):
        inside(tmp_path / "m", "model.skops")
    assert inside(tmp_path / "m", "a/b.json") == (tmp_path / "m" / "a" / "b.json").resolve()


def test_what_it_cannot_read_goes_back_to_mlflow(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame]
) -> None:
    model, X = wine

    class Wrapper(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: pd.DataFrame) -> Any:
            return model.predict(model_input)

    pyfunc_path = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        str(pyfunc_path),
        python_model=Wrapper(),
        signature=infer_signature(X, model.predict(X)),
        pip_requirements=["scikit-learn"],
    )
    with pytest.raises(UntrustedModelError, match="no sklearn flavor"):
        files_to_fetch(read_mlmodel(pyfunc_path / "MLmodel"), SAFE)
    with pytest.raises(NeedsMlflowError, match="no sklearn flavor"):
        files_to_fetch(read_mlmodel(pyfunc_path / "MLmodel"), UNSAFE)

    helper = tmp_path / "features_helper.py"
    helper.write_text("SCALE = 1.0\n")
    coded = _save(tmp_path / "coded", model, X, code_paths=[str(helper)])
    with pytest.raises(UntrustedModelError, match="own code paths"):
        load_sklearn(coded, read_mlmodel(coded / "MLmodel"), SAFE)
    with pytest.raises(NeedsMlflowError, match="own code paths"):
        load_sklearn(coded, read_mlmodel(coded / "MLmodel"), UNSAFE)

    with pytest.raises(NeedsMlflowError, match="not http"):
        RestRegistry("sqlite:///mlflow.db")
    with pytest.raises(NeedsMlflowError, match="not proxied"):
        RestRegistry("http://127.0.0.1:1")._artifact_fetcher("s3://bucket/1/models/m-1/artifacts")


def test_deserialization_switch_is_honoured(
    tmp_path: Path, wine: tuple[Any, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X = wine
    path = _save(tmp_path / "m", model, X, serialization_format="cloudpickle")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(UntrustedModelError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        load_sklearn(path, read_mlmodel(path / "MLmodel"), UNSAFE)


def test_an_unreachable_registry_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=f"cannot reach MLflow at http://127.0.0.1:{port}"):
        RestRegistry(f"http://127.0.0.1:{port}").model_version("m", alias="champion")


def test_client_settings_follow_mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    assert RestRegistry("http://mlflow:5000")._headers["Authorization"] == "Bearer t0ken"
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert RestRegistry("http://mlflow:5000")._headers["Authorization"] == "Basic YWxpY2U6cHc="
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    assert RestRegistry("https://mlflow:5000/").timeout == 7.0
