"""The trainer, the gate and reproduce against a real `mlflow server` (fixture: mlflow_server).

Every test registers its own model name, so aliases never interfere across tests (the
default name belongs to the service tests' ``registered_model`` fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.support.procs import MlflowServer
from tests.support.tables import CHANNELS, shop_table
from training import reference
from training.data import fingerprint, load_dataset, split
from training.reproduce import FingerprintMismatchError, reproduce
from training.reproduce import main as reproduce_main
from training.tracking import using_tracking_uri
from training.train import TrainConfig, TrainResult, git_tags, package_tags, train

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "beyondfit-integration"
WEAK = {"estimator": "random_forest", "n_estimators": 3, "max_depth": 1}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking_uri(mlflow_server: MlflowServer) -> Iterator[str]:
    with using_tracking_uri(mlflow_server.url):
        yield mlflow_server.url


@pytest.fixture(scope="module")
def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def run_training(tracking_uri: str, model_name: str, **overrides: Any) -> TrainResult:
    config = TrainConfig(
        tracking_uri=tracking_uri, model_name=model_name, experiment=EXPERIMENT, **overrides
    )
    return train(config)


def cli(module: str, *args: str, tracking_uri: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def champion_version(client: MlflowClient, name: str) -> int:
    return int(client.get_model_version_by_alias(name, "champion").version)


@pytest.fixture(scope="module")
def first_run(tracking_uri: str) -> TrainResult:
    """The default configuration (breast cancer, logreg), as the first version of its model."""
    return run_training(tracking_uri, "it-readback")


def test_a_run_is_readable_back_from_the_server(
    first_run: TrainResult, client: MlflowClient
) -> None:
    X, y, source = load_dataset()
    X_train, X_test, _, _ = split(X, y, 0.25, 42)
    run = client.get_run(first_run.run_id)

    params = run.data.params
    assert params["estimator"] == "logreg"
    assert (params["C"], params["max_iter"], params["solver"]) == ("1.0", "1000", "lbfgs")
    assert (params["seed"], params["test_size"], params["target"]) == ("42", "0.25", "target")
    assert params["data_source"] == source == "sklearn:breast_cancer"
    assert params["f1_average"] == "binary"

    assert set(run.data.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert run.data.metrics == pytest.approx(first_run.metrics)
    assert run.data.metrics["roc_auc"] > 0.95

    tags = run.data.tags
    assert tags["data_fingerprint"] == fingerprint(X, y) == first_run.data_fingerprint
    assert tags["git_commit"] == git_tags()["git_commit"]
    assert tags["git_dirty"] in {"true", "false"}
    assert tags["seed"] == "42"
    assert tags["data_source"] == "sklearn:breast_cancer"
    versions = {k: tags[k] for k in package_tags()}
    assert versions == package_tags()
    assert {"python", "sklearn", "mlflow", "pandas", "numpy", "scipy", "skops"} == {
        k.removesuffix("_version") for k in versions
    }
    assert tags["numpy_version"] == np.__version__
    assert "unknown" not in versions.values()
    assert run.inputs.dataset_inputs, "the training table is logged as a dataset input"

    version = client.get_model_version("it-readback", str(first_run.version))
    assert version.run_id == first_run.run_id
    assert version.tags["gate_decision"] == "first_champion"
    assert champion_version(client, "it-readback") == first_run.version

    uri = "models:/it-readback@champion"
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    assert info.signature.inputs.input_names() == list(X.columns)  # "mean radius", ...
    assert first_run.feature_names == list(X.columns)

    expected_bins = reference.compute_bins(X_train)
    artifact = mlflow.artifacts.load_dict(f"runs:/{first_run.run_id}/{reference.ARTIFACT_PATH}")
    assert artifact == expected_bins
    assert info.metadata is not None
    assert info.metadata[reference.METADATA_KEY] == expected_bins

    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert all("==" in r for r in requirements)

    # The service's load path: plain pyfunc by alias, predict_proba on the raw pipeline.
    pyfunc_model = mlflow.pyfunc.load_model(uri, suppress_warnings=True)
    raw = pyfunc_model.get_raw_model()
    proba = raw.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    assert np.array_equal(pyfunc_model.predict(X_test), raw.predict(X_test))
    assert np.array_equal(mlflow.sklearn.load_model(uri).predict_proba(X_test), proba)
    assert pyfunc_model.metadata.metadata[reference.METADATA_KEY] == expected_bins


def test_gate_promotes_a_better_model_refuses_a_worse_one_and_force_overrides(
    tracking_uri: str, client: MlflowClient
) -> None:
    name = "it-gate"

    weak = run_training(tracking_uri, name, **WEAK)
    assert (weak.gate_decision, weak.promoted) == ("first_champion", True)

    strong = run_training(tracking_uri, name)
    assert (strong.gate_decision, strong.promoted) == ("promoted", True)
    # the champion was evaluated on the same held-out rows: it scores what it logged
    assert strong.champion_value == pytest.approx(weak.metrics["roc_auc"], abs=1e-12)
    assert strong.metrics["roc_auc"] > weak.metrics["roc_auc"]
    assert champion_version(client, name) == strong.version

    worse = run_training(tracking_uri, name, **WEAK)
    assert (worse.gate_decision, worse.promoted) == ("refused", False)
    assert champion_version(client, name) == strong.version
    tags = client.get_model_version(name, str(worse.version)).tags
    assert tags["gate_decision"] == "refused"
    assert tags["gate_metric"] == "roc_auc"
    assert float(tags["gate_new"]) == worse.metrics["roc_auc"]
    assert float(tags["gate_champion"]) == pytest.approx(strong.metrics["roc_auc"], abs=1e-12)
    assert tags["gate_champion_version"] == str(strong.version)
    assert client.get_run(worse.run_id).data.tags["gate_decision"] == "refused"

    done = cli(
        "training.train",
        *("--model-name", name, "--experiment", EXPERIMENT, "--estimator", "random_forest"),
        *("--n-estimators", "3", "--max-depth", "1", "--force", "--json"),
        tracking_uri=tracking_uri,
    )
    assert done.returncode == 0, done.stderr
    forced = json.loads(done.stdout)  # stdout is only the JSON summary
    assert (forced["gate_decision"], forced["promoted"]) == ("forced", True)
    assert forced["version"] == worse.version + 1
    assert champion_version(client, name) == forced["version"]


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_gate_tolerance_and_direction_through_decide(
    tracking_uri: str, client: MlflowClient, metric: str
) -> None:
    """A weaker model is refused, then promoted once the tolerance covers the gap; for
    log_loss lower is better, so "weaker" means a larger log loss."""
    name = f"it-gate-{metric.replace('_', '-')}"
    strong = run_training(tracking_uri, name, gate_metric=metric)
    weak = run_training(tracking_uri, name, gate_metric=metric, **WEAK)
    gap = abs(strong.metrics[metric] - weak.metrics[metric])
    assert gap > 0.01
    assert (weak.gate_decision, champion_version(client, name)) == ("refused", strong.version)

    short = run_training(tracking_uri, name, gate_metric=metric, tolerance=gap * 0.9, **WEAK)
    assert (short.gate_decision, champion_version(client, name)) == ("refused", strong.version)
    assert f"(tolerance {gap * 0.9})" in short.gate_reason

    enough = run_training(tracking_uri, name, gate_metric=metric, tolerance=gap * 1.1, **WEAK)
    assert (enough.gate_decision, champion_version(client, name)) == ("promoted", enough.version)


def test_reproduce_gives_identical_predictions(first_run: TrainResult) -> None:
    result = reproduce(first_run.run_id)

    assert result.identical_predictions
    assert result.max_abs_proba_diff == 0.0
    assert result.n_rows == 143
    assert result.rebuilt_metrics == pytest.approx(first_run.metrics)
    assert "143 held-out rows, identical predictions: yes; max |Δproba| = 0.0" in result.report()


def test_reproduce_from_a_file_refuses_once_the_file_changed(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y, _ = load_dataset("breast_cancer")
    path = tmp_path / "breast_cancer.csv"
    X.assign(diagnosis=y).to_csv(path, index=False)
    trained = run_training(
        tracking_uri,
        "it-file",
        data=path,
        target="diagnosis",
        estimator="random_forest",
        n_estimators=25,
        seed=7,
    )
    assert trained.data_source == f"file:{path.resolve()}"

    assert reproduce_main([trained.run_id]) == 0
    assert "identical predictions: yes; max |Δproba| = 0.0" in capsys.readouterr().out

    kept = tmp_path / "kept.csv"
    kept.write_bytes(path.read_bytes())
    table = pd.read_csv(path)
    table.loc[0, "mean radius"] += 0.001
    table.to_csv(path, index=False)

    assert reproduce_main([trained.run_id]) == 3
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1, message
    assert "refusing to reproduce" in message[0]
    assert "the data changed" in message[0]
    with pytest.raises(FingerprintMismatchError):
        reproduce(trained.run_id)

    moved = reproduce(trained.run_id, data=kept)  # --data: the unchanged copy elsewhere
    assert moved.identical


def test_wine_trains_registers_gets_its_own_bins_and_blocks_other_columns(
    tracking_uri: str, client: MlflowClient
) -> None:
    name = "it-wine"
    X, y, _ = load_dataset("wine")
    X_train, X_test, _, _ = split(X, y, 0.25, 42)

    wine = run_training(tracking_uri, name, dataset="wine")

    assert wine.gate_decision == "first_champion"
    assert wine.classes == ["0", "1", "2"]
    assert wine.metrics["roc_auc"] > 0.9
    assert client.get_run(wine.run_id).data.params["f1_average"] == "macro"
    bins = mlflow.artifacts.load_dict(f"runs:/{wine.run_id}/{reference.ARTIFACT_PATH}")
    assert bins == reference.compute_bins(X_train)
    assert "od280/od315_of_diluted_wines" in bins["features"]
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion", suppress_warnings=True)
    assert model.metadata.get_input_schema().input_names() == list(X.columns)
    assert model.get_raw_model().predict_proba(X_test).shape == (len(X_test), 3)

    other = run_training(tracking_uri, name, dataset="breast_cancer")

    assert other.gate_decision == "refused"
    assert "other input columns" in other.gate_reason
    assert champion_version(client, name) == wine.version


def test_a_table_with_a_string_column_trains_gets_category_bins_and_reproduces(
    tracking_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    path = tmp_path / "shop.csv"
    shop_table().to_csv(path, index=False)

    trained = run_training(tracking_uri, "it-shop", data=path, target="returned")

    assert trained.gate_decision == "first_champion"
    assert trained.metrics["roc_auc"] > 0.8
    bins = mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/{reference.ARTIFACT_PATH}")
    reference.validate_bins(bins)
    assert bins["features"]["channel"]["categories"] == list(CHANNELS)
    assert bins["features"]["channel"]["ratios"][-1] == 0.0  # no "other" rows in training
    assert "edges" in bins["features"]["basket"]
    model = mlflow.pyfunc.load_model("models:/it-shop@champion", suppress_warnings=True)
    inputs = {c.name: str(c.type) for c in model.metadata.get_input_schema().inputs}
    assert inputs == {"channel": "DataType.string", "basket": "DataType.double",
                      "visits": "DataType.double"}  # fmt: skip

    again = reproduce(trained.run_id)

    assert again.identical_predictions
    assert again.max_abs_proba_diff == 0.0


def test_train_and_reproduce_leave_the_tracking_uri_as_they_found_it(
    mlflow_server: MlflowServer,
) -> None:
    """A caller's tracking URI (the module global and the environment variable) is the same
    after train() and reproduce() were given another one."""
    other = mlflow_server.url.replace("127.0.0.1", "localhost")  # the same server, by name
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    assert other not in before
    result = run_training(other, "beyondfit-uri-restored", **WEAK)
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before
    assert reproduce(result.run_id, tracking_uri=other).identical_predictions
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before
