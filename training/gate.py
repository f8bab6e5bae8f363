"""Quality gate: move the alias (``champion``) only to a model that is not worse.

After version N is registered, the current champion is evaluated on N's held-out rows (a
fair comparison: same rows, same metric) when its input schema has the same columns. N is
promoted when ``new >= champion - tolerance`` (``<=`` and ``+`` for log_loss); the first
version of a model is promoted; ``force`` promotes regardless. The decision is recorded as
tags on the model version and on the run, so the registry explains every alias move.
"""

# ruff: noqa: N803 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from training.metrics import classification_metrics, is_not_worse

FIRST = "first_champion"
PROMOTED = "promoted"
REFUSED = "refused"
FORCED = "forced"


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, and why."""

    decision: str
    """One of ``first_champion``, ``promoted``, ``refused``, ``forced``."""
    metric: str
    new_value: float
    champion_value: float | None
    champion_version: int | None
    reason: str

    @property
    def promoted(self) -> bool:
        return self.decision != REFUSED

    def tags(self) -> dict[str, str]:
        """The decision as MLflow tags (model version and run)."""
        values = {
            "gate_decision": self.decision,
            "gate_metric": self.metric,
            "gate_new": repr(self.new_value),
            "gate_champion": "" if self.champion_value is None else repr(self.champion_value),
            "gate_champion_version": (
                "" if self.champion_version is None else str(self.champion_version)
            ),
            "gate_reason": self.reason,
        }
        return values

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "promoted": self.promoted}


def current_champion(client: MlflowClient, model_name: str, alias: str) -> int | None:
    """The version the alias points at, or None when the alias (or the model) does not exist."""
    try:
        return int(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def evaluate_champion(
    model_name: str, version: int, X: pd.DataFrame, y: pd.Series, metric: str
) -> tuple[float | None, str]:
    """The champion's ``metric`` on X, y, or (None, why it cannot be compared)."""
    uri = f"models:/{model_name}/{version}"
    signature = mlflow.models.get_model_info(uri).signature
    if signature is None:
        return None, f"champion v{version} has no signature: its input columns are unknown"
    columns = [str(c) for c in signature.inputs.input_names()]
    if sorted(columns) != sorted(X.columns):
        missing = sorted(set(X.columns) - set(columns))
        extra = sorted(set(columns) - set(X.columns))
        return None, (
            f"champion v{version} has other input columns (only in the new model: {missing}; "
            f"only in the champion: {extra}): no fair comparison"
        )
    try:
        model = mlflow.sklearn.load_model(uri)
        value = classification_metrics(model, X[columns], y)[metric]
    except (MlflowException, ValueError, AttributeError, TypeError) as exc:
        return None, f"champion v{version} cannot be evaluated on these rows: {exc}"
    return value, ""


def decide(
    client: MlflowClient,
    model_name: str,
    alias: str,
    new_version: int,
    new_metrics: dict[str, float],
    X_test: pd.DataFrame,
    y_test: pd.Series,
    metric: str = "roc_auc",
    tolerance: float = 0.0,
    force: bool = False,
) -> GateDecision:
    """Compare version ``new_version`` with the current ``alias`` holder; decide, do not act."""
    new_value = new_metrics[metric]
    champion = current_champion(client, model_name, alias)
    if champion is None or champion == new_version:
        return GateDecision(FIRST, metric, new_value, None, None, f"no {alias!r} yet")
    champion_value, why = evaluate_champion(model_name, champion, X_test, y_test, metric)
    if champion_value is None:
        if force:
            return GateDecision(FORCED, metric, new_value, None, champion, f"forced; {why}")
        return GateDecision(REFUSED, metric, new_value, None, champion, f"refused: {why}")
    comparison = f"{metric} new {new_value:.6f} vs champion v{champion} {champion_value:.6f}"
    if tolerance:
        comparison += f" (tolerance {tolerance})"
    if is_not_worse(metric, new_value, champion_value, tolerance):
        return GateDecision(PROMOTED, metric, new_value, champion_value, champion, comparison)
    if force:
        return GateDecision(
            FORCED, metric, new_value, champion_value, champion, f"forced despite {comparison}"
        )
    return GateDecision(
        REFUSED, metric, new_value, champion_value, champion, f"worse: {comparison}"
    )


def apply(
    client: MlflowClient,
    model_name: str,
    alias: str,
    version: int,
    run_id: str,
    decision: GateDecision,
) -> None:
    """Record the decision on the model version and the run; move the alias if promoted."""
    tags = decision.tags()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    if decision.promoted:
        client.set_registered_model_alias(model_name, alias, str(version))
