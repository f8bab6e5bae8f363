"""Train a scikit-learn classifier, log it to MLflow, register it and run the quality gate.

    python -m training.train                        # bundled breast-cancer table, logreg
    python -m training.train --dataset wine --estimator random_forest --max-depth 4
    python -m training.train --data table.parquet --target label --json

The tracking server comes from ``MLFLOW_TRACKING_URI`` (MLflow's own variable).
"""

# ruff: noqa: N803, N806 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training import reference
from training.data import (
    BUNDLED_DATASETS,
    BUNDLED_PREFIX,
    DEFAULT_DATASET,
    DataError,
    categorical_columns,
    fingerprint,
    load_dataset,
    split,
)
from training.metrics import METRICS, classification_metrics, f1_average
from training.tracking import using_tracking_uri

ESTIMATORS = ("logreg", "random_forest")
#: skops refuses to load types it does not trust; the trees of a random forest are one.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
#: Distributions pinned, at their installed versions, in the model's requirements.
MODEL_REQUIREMENTS = ("mlflow-skinny", "scikit-learn", "pandas", "numpy", "scipy", "skops")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Re-exported: the tests and the fixtures get the data and the split from here.
__all__ = [
    "TrainConfig",
    "TrainResult",
    "build_pipeline",
    "config_from_params",
    "fingerprint",
    "load_dataset",
    "main",
    "split",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults are the CLI's defaults."""

    dataset: str = DEFAULT_DATASET
    """Bundled scikit-learn table, used when ``data`` is None."""
    data: Path | None = None
    """CSV or Parquet file; needs ``target``."""
    target: str | None = None
    """Target column of ``data`` (``target`` for the bundled tables)."""
    estimator: str = "logreg"
    C: float = 1.0
    """Inverse regularisation strength (logreg)."""
    max_iter: int = 1000
    """Solver iterations (logreg)."""
    n_estimators: int = 200
    """Trees (random_forest)."""
    max_depth: int | None = None
    """Tree depth, None for unlimited (random_forest)."""
    seed: int = 42
    test_size: float = 0.25
    experiment: str = "beyondfit"
    model_name: str = "beyondfit-classifier"
    alias: str = "champion"
    gate_metric: str = "roc_auc"
    tolerance: float = 0.0
    force: bool = False
    tracking_uri: str | None = None
    """Overrides ``MLFLOW_TRACKING_URI`` when set."""
    run_name: str | None = None


@dataclass
class TrainResult:
    """What one training run produced and what the gate decided."""

    run_id: str
    experiment_id: str
    model_name: str
    version: int
    model_uri: str
    promoted: bool
    gate_decision: str
    gate_reason: str
    gate_metric: str
    champion_value: float | None
    champion_version: int | None
    metrics: dict[str, float]
    feature_names: list[str]
    classes: list[str]
    data_source: str
    data_fingerprint: str
    n_train: int
    n_test: int
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimator_params(config: TrainConfig) -> dict[str, Any]:
    """The hyperparameters of the configured estimator, under scikit-learn's names."""
    if config.estimator == "logreg":
        return {"C": config.C, "max_iter": config.max_iter, "solver": "lbfgs"}
    if config.estimator == "random_forest":
        return {"n_estimators": config.n_estimators, "max_depth": config.max_depth}
    raise ValueError(f"unknown estimator {config.estimator!r}: choose one of {ESTIMATORS}")


def build_pipeline(config: TrainConfig, categorical: Sequence[str] = ()) -> Pipeline:
    """An unfitted Pipeline: StandardScaler + LogisticRegression, or a RandomForest.

    With ``categorical`` (string) columns a ColumnTransformer comes first: it one-hot encodes
    those columns (a category not seen in training encodes as all zeros) and passes the
    numeric ones on, scaled for the logistic regression.
    """
    params = estimator_params(config)
    steps: list[tuple[str, Any]] = []
    if categorical:
        numeric_step: Any = StandardScaler() if config.estimator == "logreg" else "passthrough"
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        steps.append(
            (
                "encode",
                ColumnTransformer(
                    [("categorical", encoder, list(categorical))], remainder=numeric_step
                ),
            )
        )
    elif config.estimator == "logreg":
        steps.append(("scaler", StandardScaler()))
    if config.estimator == "logreg":
        steps.append(("clf", LogisticRegression(random_state=config.seed, **params)))
    else:
        steps.append(("clf", RandomForestClassifier(random_state=config.seed, n_jobs=1, **params)))
    return Pipeline(steps)


def run_params(config: TrainConfig, data_source: str) -> dict[str, Any]:
    """The run's params: enough, with the data, to rebuild the model (``reproduce``)."""
    path = data_source.removeprefix("file:") if data_source.startswith("file:") else ""
    return {
        "estimator": config.estimator,
        **estimator_params(config),
        "seed": config.seed,
        "test_size": config.test_size,
        "data_source": data_source,
        "dataset": "" if path else data_source.removeprefix(BUNDLED_PREFIX),
        "data_path": path,
        "target": config.target or "target",
        "gate_metric": config.gate_metric,
        "tolerance": config.tolerance,
        "force": config.force,
    }


def config_from_params(params: dict[str, str]) -> TrainConfig:
    """The TrainConfig that a run's logged params describe (the inverse of run_params)."""

    def optional_int(text: str | None) -> int | None:
        return None if text in (None, "", "None") else int(str(text))

    estimator = params["estimator"]
    defaults = TrainConfig()
    path = params.get("data_path") or None
    return TrainConfig(
        dataset=params.get("dataset") or DEFAULT_DATASET,
        data=Path(path) if path else None,
        target=params.get("target") or None,
        estimator=estimator,
        C=float(params.get("C", defaults.C)),
        max_iter=int(params.get("max_iter", defaults.max_iter)),
        n_estimators=int(params.get("n_estimators", defaults.n_estimators)),
        max_depth=optional_int(params.get("max_depth")),
        seed=int(params["seed"]),
        test_size=float(params["test_size"]),
    )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_tags() -> dict[str, str]:
    """``git_commit`` (``unknown`` outside a repository or before the first commit) and
    ``git_dirty`` (``true`` when tracked files changed or untracked files exist)."""
    commit = _git("rev-parse", "--verify", "HEAD") or "unknown"
    status = _git("status", "--porcelain")
    dirty = "unknown" if status is None else ("true" if status else "false")
    return {"git_commit": commit, "git_dirty": dirty}


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def package_tags() -> dict[str, str]:
    import mlflow
    import sklearn

    return {
        "python_version": platform.python_version(),
        "sklearn_version": sklearn.__version__,
        "mlflow_version": mlflow.__version__,
        "pandas_version": pd.__version__,
        "numpy_version": np.__version__,
        # the rest of what the logged model's requirements pin
        "scipy_version": _dist_version("scipy") or "unknown",
        "skops_version": _dist_version("skops") or "unknown",
    }


def model_requirements() -> list[str]:
    """Pinned requirements of the logged model (passing them skips MLflow's slow inference)."""
    import mlflow

    pins = []
    for name in MODEL_REQUIREMENTS:
        installed = mlflow.__version__ if name == "mlflow-skinny" else _dist_version(name)
        if installed:
            pins.append(f"{name}=={installed}")
    return pins


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout for our own output (MLflow prints its run URL there)."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def train(config: TrainConfig) -> TrainResult:
    """Train, log, register and gate one model. See the module docstring and docs/training.md.

    ``config.tracking_uri``, when given, is used for this call only: MLflow's process-wide
    tracking URI is as it was afterwards."""
    with using_tracking_uri(config.tracking_uri):
        return _train(config)


def _train(config: TrainConfig) -> TrainResult:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from training import gate

    if config.gate_metric not in METRICS:
        raise ValueError(f"unknown gate metric {config.gate_metric!r}: choose one of {METRICS}")
    estimator_params(config)  # validates the estimator name
    started = time.perf_counter()
    timings: dict[str, float] = {}

    X, y, source = load_dataset(config.dataset, config.data, config.target)
    config = replace(config, target=str(y.name))
    data_fingerprint = fingerprint(X, y)
    X_train, X_test, y_train, y_test = split(X, y, config.test_size, config.seed)
    bins = reference.compute_bins(X_train)
    timings["load_data_seconds"] = time.perf_counter() - started

    t = time.perf_counter()
    pipeline = build_pipeline(config, categorical_columns(X)).fit(X_train, y_train)
    timings["fit_seconds"] = time.perf_counter() - t
    metrics = classification_metrics(pipeline, X_test, y_test)
    classes = [str(c) for c in pipeline.classes_]

    experiment = mlflow.set_experiment(config.experiment)
    client = MlflowClient()
    with mlflow.start_run(run_name=config.run_name) as run:
        run_id = run.info.run_id
        params = run_params(config, source)
        params["f1_average"] = f1_average(len(classes))
        params["n_features"] = X.shape[1]
        params["n_rows"] = len(X)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                **git_tags(),
                **package_tags(),
                "data_fingerprint": data_fingerprint,
                "data_source": source,
                "seed": str(config.seed),
                "estimator": config.estimator,
            }
        )
        _log_dataset(X, y, source, data_fingerprint)
        with tempfile.TemporaryDirectory() as tmp:
            bins_file = Path(tmp) / Path(reference.ARTIFACT_PATH).name
            bins_file.write_text(json.dumps(bins, indent=1))
            mlflow.log_artifact(str(bins_file), str(Path(reference.ARTIFACT_PATH).parent))

        t = time.perf_counter()
        with warnings.catch_warnings():
            # The output (class labels) is integer by nature; the hint is about inputs.
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
            signature = infer_signature(X_train, pipeline.predict(X_train))
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=X_train.head(3),
                pip_requirements=model_requirements(),
                registered_model_name=config.model_name,
                metadata={reference.METADATA_KEY: bins},
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
        timings["log_model_seconds"] = time.perf_counter() - t
        if info.registered_model_version is None:
            raise RuntimeError(f"model {config.model_name!r} was not registered")
        model_version = int(info.registered_model_version)
        mlflow.set_tag("model_uri", info.model_uri)
        mlflow.set_tag("registered_model_version", str(model_version))

        t = time.perf_counter()
        decision = gate.decide(
            client,
            config.model_name,
            config.alias,
            model_version,
            metrics,
            X_test,
            y_test,
            metric=config.gate_metric,
            tolerance=config.tolerance,
            force=config.force,
        )
        gate.apply(client, config.model_name, config.alias, model_version, run_id, decision)
        timings["gate_seconds"] = time.perf_counter() - t
        timings["total_seconds"] = time.perf_counter() - started

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        model_name=config.model_name,
        version=model_version,
        model_uri=info.model_uri,
        promoted=decision.promoted,
        gate_decision=decision.decision,
        gate_reason=decision.reason,
        gate_metric=decision.metric,
        champion_value=decision.champion_value,
        champion_version=decision.champion_version,
        metrics=metrics,
        feature_names=[str(c) for c in X.columns],
        classes=classes,
        data_source=source,
        data_fingerprint=data_fingerprint,
        n_train=len(X_train),
        n_test=len(X_test),
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _log_dataset(X: pd.DataFrame, y: pd.Series, source: str, data_fingerprint: str) -> None:
    """Record the table as an MLflow dataset input (schema, profile, digest)."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    table = X.assign(**{str(y.name): y.to_numpy()})
    # A file is its own source; a bundled table gets MLflow's default (this code).
    where: dict[str, Any] = (
        {"source": source.removeprefix("file:")} if source.startswith("file:") else {}
    )
    with warnings.catch_warnings():
        # A local path matches MLflow's local-artifact source twice; either is right.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
        dataset = from_pandas(
            table,
            **where,
            targets=str(y.name),
            name=source.removeprefix("file:").rsplit("/", 1)[-1].removeprefix(BUNDLED_PREFIX),
            digest=data_fingerprint[:32],
        )
        mlflow.log_input(dataset, context="training")  # the schema is inferred here


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=(
            "Train a scikit-learn classifier, log it to MLflow (params, held-out metrics, "
            "model with signature, reference feature bins, git sha, data fingerprint), "
            "register it and move the alias only if the quality gate allows it. "
            "The tracking server is MLFLOW_TRACKING_URI."
        ),
        epilog=(
            "examples:\n"
            "  python -m training.train\n"
            "  python -m training.train --dataset wine --estimator random_forest --max-depth 4\n"
            "  python -m training.train --data data.csv --target label --tolerance 0.005\n"
            "exit status: 0 trained (promoted or refused by the gate), "
            "2 bad arguments or data."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TrainConfig()
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=sorted(BUNDLED_DATASETS),
        default=d.dataset,
        help="bundled scikit-learn table when --data is not given (default: %(default)s)",
    )
    data.add_argument("--data", type=Path, metavar="PATH", help="CSV or Parquet training table")
    data.add_argument("--target", metavar="COL", help="target column of --data")
    data.add_argument(
        "--test-size",
        type=float,
        default=d.test_size,
        help="held-out share, stratified (default: %(default)s)",
    )
    data.add_argument(
        "--seed", type=int, default=d.seed, help="split and model seed (default: %(default)s)"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--estimator", choices=ESTIMATORS, default=d.estimator, help="(default: %(default)s)"
    )
    model.add_argument(
        "--C",
        dest="C",
        type=float,
        default=d.C,
        help="logreg: inverse regularisation strength (default: %(default)s)",
    )
    model.add_argument(
        "--max-iter",
        type=int,
        default=d.max_iter,
        help="logreg: solver iterations (default: %(default)s)",
    )
    model.add_argument(
        "--n-estimators",
        type=int,
        default=d.n_estimators,
        help="random_forest: trees (default: %(default)s)",
    )
    model.add_argument(
        "--max-depth",
        type=int,
        default=d.max_depth,
        help="random_forest: tree depth (default: unlimited)",
    )

    registry = parser.add_argument_group("tracking, registry and gate")
    registry.add_argument(
        "--experiment", default=d.experiment, help="MLflow experiment (default: %(default)s)"
    )
    registry.add_argument(
        "--model-name", default=d.model_name, help="registered model (default: %(default)s)"
    )
    registry.add_argument(
        "--alias", default=d.alias, help="alias the gate moves (default: %(default)s)"
    )
    registry.add_argument(
        "--gate-metric",
        choices=METRICS,
        default=d.gate_metric,
        help="held-out metric the gate compares (default: %(default)s; log_loss: lower wins)",
    )
    registry.add_argument(
        "--tolerance",
        type=float,
        default=d.tolerance,
        help="promote if the new model is worse than the champion by at most this much on the "
        "gate metric: new >= champion - tolerance (new <= champion + tolerance for log_loss) "
        "(default: %(default)s)",
    )
    registry.add_argument("--force", action="store_true", help="promote whatever the gate says")
    registry.add_argument("--run-name", help="MLflow run name (default: generated)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset,
        data=args.data,
        target=args.target,
        estimator=args.estimator,
        C=args.C,
        max_iter=args.max_iter,
        n_estimators=args.n_estimators,
        max_depth=args.max_depth,
        seed=args.seed,
        test_size=args.test_size,
        experiment=args.experiment,
        model_name=args.model_name,
        alias=args.alias,
        gate_metric=args.gate_metric,
        tolerance=args.tolerance,
        force=args.force,
        run_name=args.run_name,
    )


def describe(result: TrainResult, alias: str) -> str:
    """The human summary: run id, registered version, metrics and the gate's decision."""
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    if result.gate_decision == "first_champion":
        gate_line = f"first champion: alias {alias!r} -> v{result.version}"
    elif result.promoted:
        gate_line = f"{result.gate_decision}: {result.gate_reason}; alias {alias!r} -> " + (
            f"v{result.version}"
        )
    else:
        gate_line = f"refused: {result.gate_reason}; alias {alias!r} stays on " + (
            f"v{result.champion_version}"
        )
    return "\n".join(
        [
            f"run id:   {result.run_id}",
            f"model:    {result.model_name} version {result.version} ({result.model_uri})",
            f"data:     {result.data_source} fingerprint {result.data_fingerprint[:16]}... "
            f"({result.n_train} train / {result.n_test} held-out rows)",
            f"metrics:  {metrics}",
            f"gate:     {gate_line}",
        ]
    )


NO_TRACKING_URI = (
    "MLFLOW_TRACKING_URI is not set: point it at the tracking server, e.g. "
    "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (the one `make demo` starts); without it "
    "MLflow would write a new, empty ./mlflow.db into the current directory"
)


def require_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """The command-line tools need a tracking server named explicitly: MLflow's fallback is
    a SQLite file in the current directory, which knows none of the runs and models and
    litters the work tree (making every later run's ``git_dirty`` true)."""
    if not os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        parser.error(NO_TRACKING_URI)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is not None and not args.target:
        parser.error("--data needs --target COL")
    if not 0.0 < args.test_size < 1.0:
        parser.error("--test-size must be between 0 and 1")
    require_tracking_uri(parser)
    config = config_from_args(args)
    try:
        with _stdout_to_stderr(args.json):
            result = train(config)
    except DataError as exc:
        print(f"training.train: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(describe(result, config.alias))
    return 0


if __name__ == "__main__":
    sys.exit(main())
