"""The trainer without a server: CLI, data loading (CSV, Parquet), fingerprint, pipelines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.tables import CHANNELS, shop_table
from training import reproduce as reproduce_cli
from training import train as train_cli
from training.data import (
    DataError,
    categorical_columns,
    fingerprint,
    load_dataset,
    read_table,
    split,
)
from training.metrics import classification_metrics, is_not_worse
from training.train import TrainConfig, build_pipeline, config_from_params, run_params

REPO_ROOT = Path(__file__).resolve().parents[2]


def bundled_table(name: str = "breast_cancer") -> pd.DataFrame:
    X, y, _ = load_dataset(name)
    return X.assign(target=y)


# -- CLI ---------------------------------------------------------------------------------


def test_help_runs_as_a_module_and_lists_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training.train", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for option in (
        "--data", "--target", "--dataset", "--estimator", "--C", "--max-iter",
        "--n-estimators", "--max-depth", "--seed", "--test-size", "--experiment",
        "--model-name", "--alias", "--gate-metric", "--tolerance", "--force", "--json",
        "MLFLOW_TRACKING_URI",
    ):  # fmt: skip
        assert option in done.stdout, option


def test_reproduce_help_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training.reproduce", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "RUN_ID" in done.stdout
    assert "--data" in done.stdout


def test_defaults_match_the_contract() -> None:
    args = train_cli.build_parser().parse_args([])
    config = train_cli.config_from_args(args)

    assert config == TrainConfig()
    assert (config.dataset, config.estimator, config.seed, config.test_size) == (
        "breast_cancer", "logreg", 42, 0.25,
    )  # fmt: skip
    assert (config.experiment, config.model_name, config.alias) == (
        "beyondfit", "beyondfit-classifier", "champion",
    )  # fmt: skip
    assert (config.gate_metric, config.tolerance, config.force) == ("roc_auc", 0.0, False)


def test_hyperparameters_parse() -> None:
    args = train_cli.build_parser().parse_args(
        ["--estimator", "random_forest", "--n-estimators", "7", "--max-depth", "3", "--C", "0.5",
         "--max-iter", "50", "--seed", "7", "--test-size", "0.3", "--force", "--tolerance",
         "0.01", "--dataset", "wine", "--gate-metric", "log_loss"]
    )  # fmt: skip
    config = train_cli.config_from_args(args)

    assert config.estimator == "random_forest"
    assert (config.n_estimators, config.max_depth, config.C, config.max_iter) == (7, 3, 0.5, 50)
    assert (config.seed, config.test_size, config.force, config.tolerance) == (7, 0.3, True, 0.01)
    assert (config.dataset, config.gate_metric) == ("wine", "log_loss")


@pytest.mark.parametrize(
    "argv",
    [
        ["--estimator", "svm"],
        ["--dataset", "iris"],
        ["--gate-metric", "precision"],
        ["--data", "x.csv"],  # no --target
        ["--test-size", "1.5"],
        ["--seed", "abc"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        train_cli.main(argv)

    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unusable_data_exits_2_with_a_one_line_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the data is refused before the tracking server is asked anything: a dead port will do
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(path, index=False)

    assert train_cli.main(["--data", str(path), "--target", "label"]) == 2

    err = capsys.readouterr().err.strip()
    assert "target column 'label' not in the data" in err
    assert len(err.splitlines()) == 1


# -- data loading --------------------------------------------------------------------------


def test_bundled_tables_load_with_original_names() -> None:
    X, y, source = load_dataset()
    assert source == "sklearn:breast_cancer"
    assert X.shape == (569, 30)
    assert "mean radius" in X.columns
    assert set(X.dtypes) == {np.dtype("float64")}
    assert y.name == "target"
    assert sorted(y.unique()) == [0, 1]

    Xw, yw, source_w = load_dataset("wine")
    assert source_w == "sklearn:wine"
    assert Xw.shape == (178, 13)
    assert sorted(yw.unique()) == [0, 1, 2]


def test_csv_loads_the_same_table_as_the_bundled_frame(tmp_path: Path) -> None:
    table = bundled_table()
    path = tmp_path / "bc.csv"
    table.to_csv(path, index=False)

    X, y, source = load_dataset(data=path, target="target")

    assert source == f"file:{path.resolve()}"
    pd.testing.assert_frame_equal(X, table.drop(columns="target"))
    pd.testing.assert_series_equal(y, table["target"])


def test_parquet_loads_the_same_table_as_the_bundled_frame(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    table = bundled_table("wine")
    path = tmp_path / "wine.parquet"
    table.to_parquet(path, index=False)

    X, y, _ = load_dataset(data=path, target="target")

    pd.testing.assert_frame_equal(X, table.drop(columns="target"))
    pd.testing.assert_series_equal(y, table["target"])


def test_integer_features_become_float64_and_string_targets_stay(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("age,score,label\n30,1.5,yes\n40,2.5,no\n50,3.5,yes\n60,4.5,no\n")

    X, y, _ = load_dataset(data=path, target="label")

    assert list(X.columns) == ["age", "score"]
    assert set(X.dtypes) == {np.dtype("float64")}
    assert y.tolist() == ["yes", "no", "yes", "no"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,y\nTrue,1,0\nFalse,2,1\n", "unsupported kind.*'a': 'bool'"),
        ("a,b,y\nx,1,0\n,2,1\n", "missing values in feature columns.*'a': 1"),
        ("a,y\n1,0\n,1\n", "missing values in feature columns"),
        ("a,y\n1,0\n2,\n", "missing values in target"),
        ("a,y\n1,0\n2,0\n", "fewer than 2 classes"),
        ("y\n0\n1\n", "no feature columns"),
    ],
)
def test_data_that_would_change_meaning_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)

    with pytest.raises(DataError, match=message):
        load_dataset(data=path, target="y")


def test_unsupported_and_missing_files_are_refused(tmp_path: Path) -> None:
    json_file = tmp_path / "t.json"
    json_file.write_text("{}")

    with pytest.raises(DataError, match="unsupported"):
        read_table(json_file)
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "missing.csv")


def test_split_is_stratified_and_deterministic() -> None:
    X, y, _ = load_dataset()

    a = split(X, y, 0.25, 42)
    b = split(X, y, 0.25, 42)
    c = split(X, y, 0.25, 7)

    assert a[1].index.tolist() == b[1].index.tolist()
    assert a[1].index.tolist() != c[1].index.tolist()
    assert len(a[1]) == 143
    assert a[3].mean() == pytest.approx(y.mean(), abs=0.01)


# -- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_stable_across_frame_csv_and_parquet(tmp_path: Path) -> None:
    X, y, _ = load_dataset()
    table = X.assign(target=y)
    table.to_csv(tmp_path / "t.csv", index=False)
    expected = fingerprint(X, y)

    from_csv = load_dataset(data=tmp_path / "t.csv", target="target")
    assert fingerprint(from_csv[0], from_csv[1]) == expected
    assert fingerprint(X.copy(), y.copy()) == expected
    assert len(expected) == 64
    assert int(expected, 16) >= 0

    pytest.importorskip("pyarrow")
    table.to_parquet(tmp_path / "t.parquet", index=False)
    from_parquet = load_dataset(data=tmp_path / "t.parquet", target="target")
    assert fingerprint(from_parquet[0], from_parquet[1]) == expected


def test_fingerprint_ignores_the_index_but_not_the_row_order() -> None:
    X, y, _ = load_dataset("wine")
    base = fingerprint(X, y)

    shifted = X.set_axis(X.index + 1000), y.set_axis(y.index + 1000)
    assert fingerprint(*shifted) == base

    order = np.r_[1, 0, 2 : len(X)]
    assert fingerprint(X.iloc[order], y.iloc[order]) != base


def test_fingerprint_sees_one_changed_value_name_dtype_or_label() -> None:
    X, y, _ = load_dataset("wine")
    base = fingerprint(X, y)

    changed = X.copy()
    changed.iloc[100, 5] = np.nextafter(changed.iloc[100, 5], np.inf)  # one ulp
    renamed = X.rename(columns={"alcohol": "alcohol "})
    relabelled = y.copy()
    relabelled.iloc[0] = 2
    retyped = y.astype("float64")
    reordered = X[list(reversed(X.columns))]

    variants = [
        fingerprint(changed, y),
        fingerprint(renamed, y),
        fingerprint(X, relabelled),
        fingerprint(X, retyped),
        fingerprint(X, y.rename("class")),
        fingerprint(reordered, y),
        fingerprint(X.iloc[:-1], y.iloc[:-1]),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_fingerprint_treats_nan_payloads_and_signed_zero_alike() -> None:
    other_nan = np.frombuffer(np.array([0x7FF8000000000001], dtype="<u8").tobytes(), "<f8")[0]
    a = pd.DataFrame({"x": [np.nan, 0.0]})
    b = pd.DataFrame({"x": [other_nan, -0.0]})
    y = pd.Series([0, 1], name="target")

    assert fingerprint(a, y) == fingerprint(b, y)


# -- pipelines, params, metrics ------------------------------------------------------------


def test_logreg_is_scaler_plus_logistic_regression_and_deterministic() -> None:
    X, y, _ = load_dataset()
    X_train, X_test, y_train, _ = split(X, y)

    first = build_pipeline(TrainConfig()).fit(X_train, y_train)
    second = build_pipeline(TrainConfig()).fit(X_train, y_train)

    assert [name for name, _ in first.steps] == ["scaler", "clf"]
    assert np.array_equal(first.predict_proba(X_test), second.predict_proba(X_test))


@pytest.mark.parametrize("estimator", ["logreg", "random_forest"])
def test_string_columns_are_one_hot_encoded_and_unseen_categories_still_predict(
    tmp_path: Path, estimator: str
) -> None:
    path = tmp_path / "shop.csv"
    shop_table().to_csv(path, index=False)
    X, y, _ = load_dataset(data=path, target="returned")
    X_train, X_test, y_train, y_test = split(X, y)
    config = TrainConfig(estimator=estimator, n_estimators=20)

    model = build_pipeline(config, categorical_columns(X)).fit(X_train, y_train)

    assert categorical_columns(X) == ["channel"]
    assert X["channel"].map(type).eq(str).all()
    assert X[["basket", "visits"]].dtypes.eq(np.float64).all()
    assert [name for name, _ in model.steps] == ["encode", "clf"]
    assert set(model.named_steps["encode"].named_transformers_["categorical"].categories_[0]) == (
        set(CHANNELS)
    )
    assert classification_metrics(model, X_test, y_test)["roc_auc"] > 0.8
    unseen = X_test.head(2).assign(channel="kiosk")  # all-zero one-hot, not an error
    assert model.predict_proba(unseen).shape == (2, 2)


def test_random_forest_is_deterministic_for_a_seed() -> None:
    X, y, _ = load_dataset("wine")
    X_train, X_test, y_train, _ = split(X, y)
    config = TrainConfig(estimator="random_forest", n_estimators=10, max_depth=3, seed=3)

    first = build_pipeline(config).fit(X_train, y_train)
    second = build_pipeline(config).fit(X_train, y_train)

    assert np.array_equal(first.predict_proba(X_test), second.predict_proba(X_test))


def test_logged_params_rebuild_the_same_config() -> None:
    for config in (
        TrainConfig(C=0.25, max_iter=300, seed=9, test_size=0.3),
        TrainConfig(estimator="random_forest", n_estimators=11, max_depth=None, dataset="wine"),
        TrainConfig(estimator="random_forest", max_depth=2, data=Path("/d/t.csv"), target="y"),
    ):
        source = f"file:{config.data}" if config.data else f"sklearn:{config.dataset}"
        logged = {k: str(v) for k, v in run_params(config, source).items()}  # MLflow stores str

        rebuilt = config_from_params(logged)

        for attr in ("estimator", "C", "max_iter", "n_estimators", "max_depth", "seed",
                     "test_size", "data"):  # fmt: skip
            assert getattr(rebuilt, attr) == getattr(config, attr), attr
        if config.data is None:
            assert rebuilt.dataset == config.dataset


def test_metrics_binary_and_multiclass() -> None:
    for name in ("breast_cancer", "wine"):
        X, y, _ = load_dataset(name)
        X_train, X_test, y_train, y_test = split(X, y)
        model = build_pipeline(TrainConfig()).fit(X_train, y_train)

        metrics = classification_metrics(model, X_test, y_test)

        assert set(metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
        assert 0.9 < metrics["roc_auc"] <= 1.0
        assert metrics["log_loss"] > 0


def test_gate_comparison_direction_and_tolerance() -> None:
    assert is_not_worse("roc_auc", 0.95, 0.95, 0.0)
    assert not is_not_worse("roc_auc", 0.949, 0.95, 0.0)
    assert is_not_worse("roc_auc", 0.949, 0.95, 0.002)
    assert is_not_worse("log_loss", 0.10, 0.11, 0.0)
    assert not is_not_worse("log_loss", 0.12, 0.11, 0.0)
    assert is_not_worse("log_loss", 0.12, 0.11, 0.02)


def test_model_requirements_are_pinned_to_installed_versions() -> None:
    import sklearn

    pins = train_cli.model_requirements()

    assert f"scikit-learn=={sklearn.__version__}" in pins
    assert any(p.startswith("mlflow-skinny==") for p in pins)
    assert all("==" in p for p in pins)


def test_git_tags_have_the_contract_values() -> None:
    tags = train_cli.git_tags()

    assert tags["git_dirty"] in {"true", "false", "unknown"}
    assert tags["git_commit"] == "unknown" or len(tags["git_commit"]) == 40


def test_reproduce_refusal_message_is_one_line() -> None:
    exc = reproduce_cli.FingerprintMismatchError("r1", "file:/d.csv", "a" * 64, "b" * 64)

    assert len(str(exc).splitlines()) == 1
    assert "refusing" in str(exc)
    assert "file:/d.csv" in str(exc)


@pytest.mark.parametrize(
    ("module", "args"), [("training.train", []), ("training.reproduce", ["0123abcd"])]
)
def test_cli_without_a_tracking_uri_refuses_and_writes_nothing(
    module: str, args: list[str], tmp_path: Path
) -> None:
    """MLflow's fallback store is ./mlflow.db: "Run not found" from an empty database, and a
    stray file that makes every later run of the work tree dirty. The tools refuse instead."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MLFLOW_TRACKING_URI is not set" in done.stderr
    assert list(tmp_path.iterdir()) == []
