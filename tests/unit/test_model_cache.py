"""The kept last-good model copy: written atomically, served only while its files match the
sha256 recorded at download, and a damaged copy is replaced by the next download."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.model_store import ModelCache, ModelRef, ModelRefusedError

REF = ModelRef("m", "3", "champion", "run-3", "ab" * 32)


def _model_dir(tmp_path: Path, content: bytes = b"model bytes") -> Path:
    d = tmp_path / "download"
    d.mkdir(exist_ok=True)
    (d / "MLmodel").write_text("flavors: {}\n")
    (d / "model.skops").write_bytes(content)
    return d


def test_the_last_good_copy_is_kept_per_registry_and_checked(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", "http://mlflow-a:5000", "m")
    assert cache.last_good() is None
    cache.put(REF, _model_dir(tmp_path), ["MLmodel", "model.skops"])
    assert cache.last_good() is None  # downloaded, not served yet
    cache.remember(REF)
    ref, model_dir = cache.last_good() or (None, None)
    assert ref == REF
    assert model_dir is not None
    assert (model_dir / "model.skops").read_bytes() == b"model bytes"
    # another registry numbers its versions on its own: nothing shared
    assert ModelCache(tmp_path / "cache", "http://mlflow-b:5000", "m").last_good() is None

    (model_dir / "model.skops").write_bytes(b"model bytez")
    with pytest.raises(ModelRefusedError, match="does not match its recorded sha256"):
        cache.last_good()
    # the next download of that version replaces the damaged copy
    cache.put(REF, _model_dir(tmp_path), ["MLmodel", "model.skops"])
    assert cache.last_good() is not None


def test_serving_a_new_version_drops_the_older_copies(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", "http://mlflow:5000", "m")
    cache.put(REF, _model_dir(tmp_path), ["MLmodel", "model.skops"])
    cache.remember(REF)
    newer = ModelRef("m", "4", "champion", "run-4")
    cache.put(newer, _model_dir(tmp_path, b"v4"), ["MLmodel", "model.skops"])
    cache.remember(newer)
    found = cache.last_good()
    assert found is not None
    assert found[0] == newer
    assert sorted(p.name for p in cache.root.iterdir() if p.is_dir()) == ["4"]
