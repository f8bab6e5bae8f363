"""Training data: loading, the held-out split and the data fingerprint.

Kept free of MLflow so that it is cheap to import (tests, the service, notebooks).
"""

# ruff: noqa: N803, N806 - X / X_train / X_test: scikit-learn's names

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split

#: The tables that ship with scikit-learn and need no download.
BUNDLED_DATASETS: dict[str, str] = {
    "breast_cancer": "binary: 569 rows, 30 features (scikit-learn's breast-cancer table)",
    "wine": "3 classes: 178 rows, 13 features (scikit-learn's wine table)",
}
DEFAULT_DATASET = "breast_cancer"
#: Name of the target column of the bundled tables.
BUNDLED_TARGET = "target"
#: Prefix of ``data_source`` for the bundled tables and for files.
BUNDLED_PREFIX = "sklearn:"
FILE_PREFIX = "file:"
FINGERPRINT_VERSION = "beyondfit-data-fingerprint-v1"


class DataError(ValueError):
    """The data cannot be used for training (missing target, boolean feature, NaN...)."""


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (also .csv.gz) or Parquet file into a DataFrame.

    CSV floats are parsed with ``float_precision="round_trip"`` so that a table written with
    ``DataFrame.to_csv`` reads back bit-for-bit, and its fingerprint does not change.
    """
    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, float_precision="round_trip")
    raise DataError(f"unsupported data file {path.name!r}: use .csv, .csv.gz or .parquet")


def bundled_frame(dataset: str) -> pd.DataFrame:
    """A bundled scikit-learn table as one frame: the features, then the column ``target``."""
    if dataset == "breast_cancer":
        frame = load_breast_cancer(as_frame=True).frame
    elif dataset == "wine":
        frame = load_wine(as_frame=True).frame
    else:
        choices = ", ".join(BUNDLED_DATASETS)
        raise DataError(f"unknown bundled dataset {dataset!r}: choose one of {choices}")
    assert isinstance(frame, pd.DataFrame)
    return frame


def is_categorical(column: pd.Series) -> bool:
    """Whether a feature column is categorical: strings (object, string or category dtype)."""
    return bool(
        pd.api.types.is_object_dtype(column)
        or pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    )


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """The names of the categorical (string) columns of a feature frame, in column order."""
    return [str(c) for c in X.columns if is_categorical(X[c])]


def features_and_target(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Split a table into features (every column but ``target``) and the target.

    Numeric columns become float64; string columns (object, string or category dtype) stay
    categorical, as Python ``str`` values in an object column. Refuses, rather than silently
    dropping or coercing, other kinds (booleans, dates) and missing values: either would
    change what the model means.
    """
    if target not in frame.columns:
        raise DataError(f"target column {target!r} not in the data; columns: {list(frame)}")
    y = frame[target]
    X = frame.drop(columns=[target])
    if X.shape[1] == 0:
        raise DataError("the data has no feature columns besides the target")
    if len({str(c) for c in X.columns}) != X.shape[1]:
        raise DataError("feature column names are not unique")
    unsupported = {
        str(c): str(X[c].dtype)
        for c in X.columns
        if not is_categorical(X[c])
        and not (pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c]))
    }
    if unsupported:
        raise DataError(
            "feature columns of unsupported kind (numbers and strings only; encode booleans "
            f"and dates as one of those first), column: dtype: {unsupported}"
        )
    with_nan = {str(c): int(n) for c, n in X.isna().sum().items() if n}
    if with_nan:
        raise DataError(f"missing values in feature columns (column: count): {with_nan}")
    categorical = [c for c in X.columns if is_categorical(X[c])]
    if not categorical:
        # One float64 block, laid out as before string columns were accepted: the memory
        # layout decides which BLAS kernel predict uses, and so the last bits of a probability.
        X = X.astype("float64")
    else:
        X = pd.DataFrame(
            {
                c: pd.Series([str(v) for v in X[c].tolist()], index=X.index, dtype=object)
                if c in categorical
                else X[c].astype("float64")
                for c in X.columns
            },
            index=X.index,
        )
    X.columns = [str(c) for c in X.columns]
    if y.isna().any():
        raise DataError(f"missing values in target column {target!r}: {int(y.isna().sum())}")
    if y.nunique() < 2:
        raise DataError(f"target column {target!r} has fewer than 2 classes")
    return X, y.rename(target)


def load_dataset(
    dataset: str | None = DEFAULT_DATASET,
    data: str | Path | None = None,
    target: str | None = None,
) -> tuple[pd.DataFrame, pd.Series, str]:
    """Load the training table: (X features, y target, source description).

    Numeric features are float64, string features ``str`` in object columns.

    ``data`` (a CSV or Parquet path, with ``target``) wins over ``dataset`` (a bundled table,
    target ``target``). The source description is ``sklearn:<name>`` or ``file:<abs path>``;
    it is what the run records and what ``reproduce`` reads back.
    """
    if data is not None:
        if not target:
            raise DataError("--target COL is required with --data PATH")
        path = Path(data).expanduser().resolve()
        X, y = features_and_target(read_table(path), target)
        return X, y, f"{FILE_PREFIX}{path}"
    name = dataset or DEFAULT_DATASET
    frame = bundled_frame(name)
    X, y = features_and_target(frame, target or BUNDLED_TARGET)
    return X, y, f"{BUNDLED_PREFIX}{name}"


def split(
    X: pd.DataFrame, y: pd.Series, test_size: float = 0.25, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The stratified held-out split: (X_train, X_test, y_train, y_test).

    Deterministic for a given table, ``test_size`` and ``seed``: the trainer, the gate,
    ``reproduce`` and the tests all call this to get the same held-out rows.
    """
    parts = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    X_train, X_test, y_train, y_test = parts
    return X_train, X_test, y_train, y_test


def _canonical_column(column: pd.Series) -> tuple[str, bytes]:
    """(kind, bytes) of a column, independent of how it was read (CSV, Parquet, DataFrame)."""
    if pd.api.types.is_bool_dtype(column) and not column.isna().any():
        return "bool", column.to_numpy(dtype=np.uint8).tobytes()
    if pd.api.types.is_integer_dtype(column) and not column.isna().any():
        return "int64", column.to_numpy(dtype="<i8").tobytes()
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype="<f8", na_value=np.nan)
        # One bit pattern for every NaN, and +0.0 for -0.0, so equal tables hash equal.
        values = np.where(np.isnan(values), np.nan, values) + 0.0
        return "float64", values.astype("<f8").tobytes()
    cells = [None if pd.isna(v) else str(v) for v in column.tolist()]
    return "str", json.dumps(cells, ensure_ascii=False, separators=(",", ":")).encode()


def fingerprint(X: pd.DataFrame, y: pd.Series) -> str:
    """sha256 of a canonical serialisation of the table: column names, kinds and values.

    Row order, column order, names and values all count; how the table was stored does not
    (a DataFrame, its CSV written with ``to_csv`` and its Parquet give one fingerprint).
    Integer and float columns are different kinds; the trainer fingerprints its float64
    features and the target as loaded.
    """
    digest = hashlib.sha256()
    header = {"v": FINGERPRINT_VERSION, "rows": len(X), "target": str(y.name)}
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    columns = [(str(name), X[name]) for name in X.columns]
    columns.append((f"target:{y.name}", y))
    for name, column in columns:
        if len(column) != len(X):
            raise DataError(f"column {name!r} has {len(column)} rows, expected {len(X)}")
        kind, payload = _canonical_column(column)
        digest.update(json.dumps([name, kind, len(payload)]).encode() + b"\n")
        digest.update(payload)
    return digest.hexdigest()
