"""Reference bins (training/reference.py): the drift reference the service counts against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import reference
from training.data import load_dataset, split

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_edges_are_the_inner_deciles_of_a_uniform_column() -> None:
    values = np.arange(1, 1001, dtype=float)  # 1..1000

    edges = reference.feature_edges(values)

    assert edges == [101.0, 201.0, 301.0, 401.0, 501.0, 601.0, 701.0, 801.0, 901.0]
    assert set(edges) <= set(values)  # observed values
    assert edges == sorted(edges)


def test_ratios_are_tenths_and_sum_to_one_for_a_uniform_column() -> None:
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float)})

    bins = reference.compute_bins(frame)

    ratios = bins["features"]["x"]["ratios"]
    assert len(ratios) == 10
    assert sum(ratios) == pytest.approx(1.0)
    assert ratios == pytest.approx([0.1] * 10)


def test_bin_index_is_searchsorted_right() -> None:
    edges = [1.0, 2.0, 3.0]
    values = [0.5, 1.0, 1.5, 2.0, 2.999, 3.0, 7.0]

    index = reference.bin_index(edges, values)

    assert index.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert index.tolist() == np.searchsorted(edges, values, side="right").tolist()
    assert reference.bin_labels(edges) == ["0", "1", "2", "3"]


def test_out_of_range_values_land_in_the_end_bins() -> None:
    frame = pd.DataFrame({"x": np.linspace(10.0, 20.0, 101)})
    edges = reference.compute_bins(frame)["features"]["x"]["edges"]

    index = reference.bin_index(edges, [-1e12, 9.99, 20.01, 1e12, np.inf, -np.inf])

    assert index.tolist() == [0, 0, len(edges), len(edges), len(edges), 0]


def test_low_cardinality_feature_gets_fewer_bins() -> None:
    # 70 % zeros, 30 % ones: the deciles are only 0 and 1.
    frame = pd.DataFrame({"flag": [0.0] * 70 + [1.0] * 30})

    spec = reference.compute_bins(frame)["features"]["flag"]

    assert spec["edges"] == [0.0, 1.0]
    # bin 0 (< 0) is empty, bin 1 holds the zeros, bin 2 the ones
    assert spec["ratios"] == pytest.approx([0.0, 0.7, 0.3])


def test_constant_feature_has_one_edge_and_all_rows_in_one_bin() -> None:
    spec = reference.compute_bins(pd.DataFrame({"c": [5.0] * 20}))["features"]["c"]

    assert spec["edges"] == [5.0]
    assert spec["ratios"] == pytest.approx([0.0, 1.0])


def test_ratios_match_counting_the_training_rows_in_the_bins() -> None:
    X, y, _ = load_dataset("breast_cancer")
    X_train, _, _, _ = split(X, y)

    bins = reference.compute_bins(X_train)

    reference.validate_bins(bins)
    assert list(bins["features"]) == list(X_train.columns)  # names kept, spaces and all
    assert "mean radius" in bins["features"]
    for name, spec in bins["features"].items():
        counts = np.bincount(
            reference.bin_index(spec["edges"], X_train[name]), minlength=len(spec["ratios"])
        )
        assert (counts / len(X_train)).tolist() == pytest.approx(spec["ratios"])
        assert sum(spec["ratios"]) == pytest.approx(1.0)


def test_bins_survive_json_exactly() -> None:
    X, _, _ = load_dataset("wine")

    bins = reference.compute_bins(X)

    assert json.loads(json.dumps(bins)) == bins
    assert bins["version"] == reference.BINS_VERSION


@pytest.mark.parametrize(
    ("bins", "message"),
    [
        ({"version": 2, "features": {"x": {"edges": [], "ratios": [1.0]}}}, "version"),
        ({"version": 1, "features": {}}, "no features"),
        ({"version": 1, "features": {"x": {"edges": [1.0], "ratios": [1.0]}}}, "ratios"),
        ({"version": 1, "features": {"x": {"edges": [2.0, 1.0], "ratios": [0.2] * 3}}}, "edges"),
        ({"version": 1, "features": {"x": {"edges": [1.0], "ratios": [0.2, 0.2]}}}, "sum"),
        ({"version": 1, "features": {"c": {"categories": ["a"], "ratios": [1.0]}}}, "ratios"),
        ({"version": 1, "features": {"c": {"categories": [1], "ratios": [1.0, 0]}}}, "strings"),
        (
            {"version": 1, "features": {"c": {"categories": ["a", "a"], "ratios": [1, 0, 0]}}},
            "not unique",
        ),
    ],
)
def test_validate_bins_rejects_malformed_documents(bins: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reference.validate_bins(bins)


def test_a_string_column_gets_its_categories_most_frequent_first_and_an_other_bin() -> None:
    values = ["b"] * 5 + ["a"] * 3 + ["c"] * 3 + ["d"]

    frame = pd.DataFrame({"c": pd.Series(values, dtype=object), "x": np.arange(12.0)})
    bins = reference.compute_bins(frame)

    spec = bins["features"]["c"]
    assert spec["categories"] == ["b", "a", "c", "d"]  # by count, ties by value
    assert spec["ratios"] == pytest.approx([5 / 12, 3 / 12, 3 / 12, 1 / 12, 0.0])
    assert "edges" in bins["features"]["x"]
    reference.validate_bins(bins)
    assert list(reference.category_index(spec["categories"], ["d", "zzz", "b"])) == [3, 4, 0]


def test_categories_beyond_the_limit_share_the_other_bin() -> None:
    n = reference.MAX_CATEGORIES + 5
    # category i occurs n - i times, so the first MAX_CATEGORIES are the most frequent
    values = [f"k{i:02d}" for i in range(n) for _ in range(n - i)]

    categories = reference.feature_categories(values)
    ratios = reference.category_ratios(categories, values)

    assert categories == [f"k{i:02d}" for i in range(reference.MAX_CATEGORIES)]
    rare = sum(n - i for i in range(reference.MAX_CATEGORIES, n))
    assert ratios[-1] == pytest.approx(rare / len(values))
    assert sum(ratios) == pytest.approx(1.0)


def test_reference_module_does_not_import_mlflow() -> None:
    code = "import sys, training.reference; print('mlflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
