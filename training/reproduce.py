"""Rebuild a run's model from what the run recorded, and show it predicts identically.

    python -m training.reproduce RUN_ID [--data PATH]

Reads the run's params and tags, reloads the data from the recorded source (the bundled
table, or the recorded path; ``--data`` overrides the path), refuses when the data
fingerprint differs, retrains with the recorded params and seed, and compares the rebuilt
model's predictions and probabilities on the held-out rows with the logged model's.

Exit status: 0 identical, 1 not identical, 2 bad arguments or unreadable data,
3 data fingerprint differs (refused).
"""

# ruff: noqa: N806 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.data import DataError, categorical_columns, fingerprint, load_dataset, split
from training.metrics import classification_metrics
from training.tracking import using_tracking_uri
from training.train import build_pipeline, config_from_params, package_tags, require_tracking_uri

EXIT_IDENTICAL = 0
EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_FINGERPRINT = 3


class FingerprintMismatchError(RuntimeError):
    """The data no longer has the fingerprint the run recorded: reproduction is refused."""

    def __init__(self, run_id: str, source: str, recorded: str, current: str) -> None:
        self.run_id = run_id
        self.source = source
        self.recorded = recorded
        self.current = current
        super().__init__(
            f"refusing to reproduce run {run_id}: the data at {source} has fingerprint "
            f"{current[:16]}..., the run recorded {recorded[:16]}... (the data changed)"
        )


@dataclass
class ReproduceResult:
    """The comparison of the rebuilt model with the logged one on the held-out rows."""

    run_id: str
    model_uri: str
    data_source: str
    data_fingerprint: str
    n_rows: int
    identical_predictions: bool
    max_abs_proba_diff: float
    recorded_metrics: dict[str, float]
    rebuilt_metrics: dict[str, float]
    environment_differences: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Tag -> (recorded, now) for package versions that differ from the run's."""

    @property
    def identical(self) -> bool:
        return self.identical_predictions and self.max_abs_proba_diff == 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identical": self.identical}

    def report(self) -> str:
        lines = [
            f"run {self.run_id}: rebuilt from {self.data_source} "
            f"(fingerprint {self.data_fingerprint[:16]}... matches)",
            f"{self.n_rows} held-out rows, identical predictions: "
            f"{'yes' if self.identical_predictions else 'no'}; "
            f"max |Δproba| = {self.max_abs_proba_diff!r}",
        ]
        for tag, (recorded, now) in self.environment_differences.items():
            lines.append(f"note: {tag} was {recorded}, is {now}")
        return "\n".join(lines)


def reproduce(
    run_id: str, data: str | Path | None = None, tracking_uri: str | None = None
) -> ReproduceResult:
    """Rebuild run ``run_id``'s model and compare it with the logged model.

    Raises FingerprintMismatchError when the data differ from what the run trained on.
    ``tracking_uri``, when given, is used for this call only.
    """
    with using_tracking_uri(tracking_uri):
        return _reproduce(run_id, data)


def _reproduce(run_id: str, data: str | Path | None) -> ReproduceResult:
    import mlflow
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(run_id)
    params: dict[str, str] = dict(run.data.params)
    tags: dict[str, str] = dict(run.data.tags)
    if "estimator" not in params or "data_fingerprint" not in tags:
        raise DataError(f"run {run_id} was not logged by training.train (no estimator/fingerprint)")
    config = config_from_params(params)
    if data is not None:
        config = replace(config, data=Path(data))

    X, y, source = load_dataset(config.dataset, config.data, config.target)
    current = fingerprint(X, y)
    if current != tags["data_fingerprint"]:
        raise FingerprintMismatchError(run_id, source, tags["data_fingerprint"], current)

    X_train, X_test, y_train, _ = split(X, y, config.test_size, config.seed)
    rebuilt = build_pipeline(config, categorical_columns(X)).fit(X_train, y_train)
    model_uri = tags.get("model_uri") or f"runs:/{run_id}/model"
    logged = mlflow.sklearn.load_model(model_uri)

    same_predictions = bool(np.array_equal(rebuilt.predict(X_test), logged.predict(X_test)))
    proba_rebuilt = np.asarray(rebuilt.predict_proba(X_test), dtype=np.float64)
    proba_logged = np.asarray(logged.predict_proba(X_test), dtype=np.float64)
    if proba_rebuilt.shape != proba_logged.shape:
        max_diff = float("inf")
    else:
        max_diff = float(np.max(np.abs(proba_rebuilt - proba_logged)))

    now = {**package_tags(), "python_version": platform.python_version()}
    differences = {
        tag: (tags[tag], value) for tag, value in now.items() if tag in tags and tags[tag] != value
    }
    return ReproduceResult(
        run_id=run_id,
        model_uri=model_uri,
        data_source=source,
        data_fingerprint=current,
        n_rows=len(X_test),
        identical_predictions=same_predictions,
        max_abs_proba_diff=max_diff,
        recorded_metrics={k: float(v) for k, v in run.data.metrics.items()},
        rebuilt_metrics=classification_metrics(rebuilt, X_test, y.loc[X_test.index]),
        environment_differences=differences,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.reproduce",
        description=(
            "Rebuild a training run's model from its recorded params, seed and data, and "
            "show that its predictions on the held-out rows equal the logged model's. "
            "Refuses when the data's fingerprint differs from the recorded one. "
            "The tracking server is MLFLOW_TRACKING_URI."
        ),
        epilog="exit status: 0 identical, 1 different, 2 bad arguments/data, "
        "3 data fingerprint differs",
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="MLflow run id of a training run")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help="read the table from PATH instead of the recorded path (e.g. a moved copy)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    parser = build_parser()
    args = parser.parse_args(argv)
    require_tracking_uri(parser)
    try:
        result = reproduce(args.run_id, args.data)
    except FingerprintMismatchError as exc:
        print(f"training.reproduce: {exc}", file=sys.stderr)
        return EXIT_FINGERPRINT
    except (DataError, MlflowException) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"training.reproduce: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(result.report())
    return EXIT_IDENTICAL if result.identical else EXIT_DIFFERENT


if __name__ == "__main__":
    sys.exit(main())
