"""Reference feature bins: the drift reference that travels with every model.

For each feature, the training rows are cut into (at most) 10 quantile bins. The service
counts live inputs in the same bins (``model_feature_bin_total{feature, bin}``) and exposes
the training shares (``model_feature_reference_ratio{feature, bin}``); Prometheus turns the
two into a PSI per feature.

Format (``BINS``)::

    {"version": 1,
     "features": {name: {"edges": [e1, ..., ek], "ratios": [r0, ..., rk]}}}

``edges`` are the sorted, deduplicated inner cut points (the 0.1 .. 0.9 quantiles of the
training column, each an observed value: numpy's ``method="higher"``), so a low-cardinality
feature gets fewer bins. A value ``x`` falls in bin
``numpy.searchsorted(edges, x, side="right")`` (0 .. k), labelled ``str(index)``. Values below
the training range land in bin 0, values above it in bin k. ``ratios`` are the share of
training rows in each bin (k + 1 entries that sum to 1).

A categorical (string) feature has ``categories`` instead of ``edges``::

    {name: {"categories": [c0, ..., c(k-1)], "ratios": [r0, ..., rk]}}

``categories`` are the (at most ``MAX_CATEGORIES``) most frequent training values, most
frequent first (ties by value). Value ``c_i`` falls in bin ``i``; every other value, rare in
training or never seen there, falls in the last bin ``k`` ("other"), whose ratio is the share
of training rows outside the listed categories (0 when there are none). The labels stay
``"0" .. str(k)``, so one PSI rule serves both kinds.

This module imports only numpy and pandas, so the service can import it cheaply.
"""

# ruff: noqa: N803 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

BINS_VERSION = 1
N_BINS = 10
#: The inner quantiles whose values become the bin edges (0.1, 0.2, ..., 0.9).
QUANTILES: tuple[float, ...] = tuple(i / N_BINS for i in range(1, N_BINS))
#: Each edge is an observed training value (numpy's "higher" quantile), so a discrete
#: feature gets no edges between its values (no empty bins inside its range), and with
#: ``side="right"`` about q of the rows fall below the q-quantile edge.
QUANTILE_METHOD: Final = "higher"
#: The most categories of a string feature that get a bin of their own; the rest share the
#: "other" bin. Bounds the label cardinality of the bin counters.
MAX_CATEGORIES = 20
#: Key of the bins in the MLflow model metadata (MLmodel ``metadata``).
METADATA_KEY = "beyondfit_reference_bins"
#: Path of the bins as a run artifact.
ARTIFACT_PATH = "reference/feature_bins.json"


def feature_edges(values: npt.ArrayLike) -> list[float]:
    """Sorted unique inner quantile cut points (0.1 .. 0.9) of ``values``, NaN ignored."""
    column = np.asarray(values, dtype=np.float64)
    column = column[~np.isnan(column)]
    if column.size == 0:
        return []
    cuts = np.quantile(column, list(QUANTILES), method=QUANTILE_METHOD)
    return [float(edge) for edge in np.unique(cuts)]


def bin_index(
    edges: Sequence[float] | npt.ArrayLike, values: npt.ArrayLike
) -> npt.NDArray[np.intp]:
    """Bin index of each value: ``searchsorted(edges, x, side="right")``, 0 .. len(edges).

    NaN sorts last, so it lands in the top bin; the service rejects NaN before binning.
    """
    return np.searchsorted(
        np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right"
    )


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins of a feature with these edges: "0" .. str(len(edges))."""
    return [str(i) for i in range(len(edges) + 1)]


def feature_ratios(edges: Sequence[float], values: npt.ArrayLike) -> list[float]:
    """Share of ``values`` (NaN ignored) in each bin; len(edges) + 1 entries summing to 1."""
    column = np.asarray(values, dtype=np.float64)
    column = column[~np.isnan(column)]
    n_bins = len(edges) + 1
    if column.size == 0:
        return [1.0 / n_bins] * n_bins
    counts = np.bincount(bin_index(edges, column), minlength=n_bins)
    return [float(c) for c in counts / column.size]


def feature_categories(values: Sequence[str] | npt.ArrayLike) -> list[str]:
    """The ``MAX_CATEGORIES`` most frequent values, most frequent first, ties by value."""
    counts = pd.Series(np.asarray(values, dtype=object)).dropna().astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    return [str(value) for value, _ in ranked[:MAX_CATEGORIES]]


def category_index(categories: Sequence[str], values: Sequence[object]) -> npt.NDArray[np.intp]:
    """Bin index of each value: its position in ``categories``, or len(categories) (other)."""
    position = {c: i for i, c in enumerate(categories)}
    other = len(categories)
    return np.fromiter((position.get(str(v), other) for v in values), dtype=np.intp)


def category_ratios(categories: Sequence[str], values: Sequence[object]) -> list[float]:
    """Share of ``values`` in each category and in "other"; len(categories) + 1 entries."""
    n_bins = len(categories) + 1
    if len(values) == 0:
        return [1.0 / n_bins] * n_bins
    counts = np.bincount(category_index(categories, values), minlength=n_bins)
    return [float(c) for c in counts / len(values)]


def is_categorical_spec(spec: Mapping[str, Any]) -> bool:
    """Whether the bins of one feature are categorical (``categories``) or numeric."""
    return "categories" in spec


def compute_bins(X: pd.DataFrame) -> dict[str, Any]:
    """The reference bins (``BINS``) of every column of the training frame ``X``.

    Numeric columns get quantile edges, string (object, string or category dtype) columns
    their most frequent categories.
    """
    features: dict[str, dict[str, list[Any]]] = {}
    for name in X.columns:
        series = X[name]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            column = series.to_numpy(dtype=np.float64, na_value=np.nan)
            edges = feature_edges(column)
            features[str(name)] = {"edges": edges, "ratios": feature_ratios(edges, column)}
        else:
            values = [str(v) for v in series.dropna().tolist()]
            categories = feature_categories(values)
            features[str(name)] = {
                "categories": categories,
                "ratios": category_ratios(categories, values),
            }
    return {"version": BINS_VERSION, "features": features}


def validate_bins(bins: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``bins`` is a well-formed ``BINS`` document."""
    if bins.get("version") != BINS_VERSION:
        raise ValueError(f"unsupported reference bins version: {bins.get('version')!r}")
    features = bins.get("features")
    if not isinstance(features, Mapping) or not features:
        raise ValueError("reference bins have no features")
    for name, spec in features.items():
        ratios = spec.get("ratios")
        if not isinstance(ratios, list):
            raise ValueError(f"feature {name!r}: ratios must be a list")
        if is_categorical_spec(spec):
            categories = spec.get("categories")
            if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
                raise ValueError(f"feature {name!r}: categories must be a list of strings")
            if len(set(categories)) != len(categories):
                raise ValueError(f"feature {name!r}: categories are not unique")
            if len(ratios) != len(categories) + 1:
                raise ValueError(
                    f"feature {name!r}: {len(ratios)} ratios for {len(categories)} categories"
                )
        else:
            edges = spec.get("edges")
            if not isinstance(edges, list):
                raise ValueError(f"feature {name!r}: edges and ratios must be lists")
            if len(ratios) != len(edges) + 1:
                raise ValueError(f"feature {name!r}: {len(ratios)} ratios for {len(edges)} edges")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"feature {name!r}: edges are not strictly increasing")
        if not np.isclose(sum(ratios), 1.0):
            raise ValueError(f"feature {name!r}: ratios sum to {sum(ratios)}, not 1")
