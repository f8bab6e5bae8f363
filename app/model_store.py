"""Loads the model from the MLflow registry, checks it, and swaps it in without a restart.

Each worker runs one ModelStore. Its background task first loads the model with exponential
backoff (the process stays alive and not ready while MLflow is unreachable), then watches the
alias: a new version is loaded in a thread, checked (same input columns, a finite prediction
on its input example) and swapped in with one reference assignment. A version that fails the
check is refused, counted and logged, and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.metrics import FeatureBinCounter, Metrics
from app.predictor import Prediction, Predictor, PyfuncPredictor, SklearnPredictor
from app.registry import (
    DIGEST_TAG,
    CorruptModelError,
    NeedsMlflowError,
    RegistryError,
    RestRegistry,
    TrustPolicy,
    UntrustedModelError,
    files_to_fetch,
    inside,
    load_sklearn,
    read_mlmodel,
    sha256_of,
    verify_digest,
)
from app.schema import InputSchema, ModelInput, UnsupportedSignatureError, input_schema
from app.settings import Settings

log = logging.getLogger("beyondfit.model")

BINS_METADATA_KEY = "beyondfit_reference_bins"


class ModelRefusedError(Exception):
    """A model version that loaded but must not serve."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model version lives in the registry."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    digest: str | None = None
    """sha256 of the serialized estimator, as the trainer recorded it (a version tag)."""


@dataclass(frozen=True)
class LoadedModel:
    """A checked model version, ready to serve. Never mutated: a swap replaces it whole."""

    ref: ModelRef
    schema: InputSchema
    predictor: Predictor
    signature: dict[str, Any]
    input_example: list[dict[str, Any]]
    bins: FeatureBinCounter | None = None
    loader: str = "direct"
    """"direct" (app.registry) or "mlflow" (mlflow.pyfunc.load_model)."""
    loaded_at: float = field(default_factory=time.time)

    def predict(self, rows: ModelInput) -> Prediction:
        return self.predictor.predict(rows)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/NAME@ALIAS` -> (NAME, ALIAS, None); `models:/NAME/N` -> (NAME, None, N)."""
    if not uri.startswith("models:/"):
        raise ValueError(
            f"model URI must look like models:/NAME@ALIAS or models:/NAME/VERSION: {uri!r}"
        )
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, alias, None
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, None, version
    raise ValueError(f"model URI names no alias or version: {uri!r}")


class ModelStore:
    """Holds the model in service for one worker and keeps it current."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.name, self.alias, self.pinned_version = parse_model_uri(settings.model_uri)
        self.current: LoadedModel | None = None
        self._refused: set[str] = set()
        self._failures: dict[str, int] = {}
        self.cache = ModelCache(
            settings.model_cache_dir or _default_cache_dir(),
            settings.mlflow_tracking_uri or "",
            self.name,
        )
        self._cache_tried = False
        self._client: Any = None
        self.policy = TrustPolicy(tuple(settings.trusted_types), settings.allow_unsafe_models)
        self._registry = direct_registry(settings)
        """The REST client of the direct loader; None when MLflow's own client must be used."""
        self.first_load = asyncio.Event()

    # -- readiness across the workers of one server ------------------------------------------
    # Files in the shared metrics directory: `model-loaded` says some worker of this server
    # has loaded a model; `loading-<pid>` says worker <pid> accepts connections without one.
    @property
    def _shared_dir(self) -> Path | None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        return Path(directory) if directory else None

    def replaces_a_worker(self) -> bool:
        """True in a worker that gunicorn started after the server had a model: it should
        load before it accepts connections instead of answering 503 meanwhile."""
        shared = self._shared_dir
        return shared is not None and (shared / "model-loaded").exists()

    def accepting_without_model(self) -> None:
        if self._shared_dir is not None:
            (self._shared_dir / f"loading-{os.getpid()}").touch()

    def all_workers_loaded(self) -> bool:
        """Whether no live worker of this server accepts connections without a model, so a
        ready server never answers 503 on any worker."""
        if self.current is None:
            return False
        shared = self._shared_dir
        if shared is None:
            return True
        return not any(
            Path(f"/proc/{p.name.removeprefix('loading-')}").exists()
            for p in shared.glob("loading-*")
        )

    # -- registry -------------------------------------------------------------------------
    def _mlflow_client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.settings.mlflow_tracking_uri)
        return self._client

    def resolve(self) -> ModelRef:
        """Asks the registry which version the URI names now."""
        rest = self._registry
        if rest is not None:
            v = rest.model_version(self.name, alias=self.alias, version=self.pinned_version)
            return ModelRef(self.name, v.version, self.alias, v.run_id, v.digest)
        client = self._mlflow_client()
        if self.alias is not None:
            mv = client.get_model_version_by_alias(self.name, self.alias)
        else:
            mv = client.get_model_version(self.name, self.pinned_version)
        return ModelRef(
            self.name, str(mv.version), self.alias, mv.run_id, (mv.tags or {}).get(DIGEST_TAG)
        )

    # -- loading and checking -------------------------------------------------------------
    def load(self, ref: ModelRef) -> LoadedModel:
        """Downloads, builds and checks one version; ModelRefusedError if it must not serve."""
        try:
            parts = self._load_direct(ref) or self._load_with_mlflow(ref)
        except UntrustedModelError as e:
            raise ModelRefusedError(f"untrusted model: {e}") from e
        return self._build(ref, parts)

    def load_cached(self) -> LoadedModel | None:
        """The last version this server served, from the files kept on the pod, verified
        against the sha256 recorded when they were downloaded; None if there is none."""
        found = self.cache.last_good()
        if found is None:
            return None
        ref, model_dir = found
        try:
            mlmodel = read_mlmodel(model_dir / "MLmodel")
            model = load_sklearn(model_dir, mlmodel, self.policy)
        except (UntrustedModelError, CorruptModelError) as e:
            raise ModelRefusedError(f"the kept copy of version {ref.version}: {e}") from e
        parts = _Parts(
            model.signature, model.metadata, model.estimator, None, model.example_rows, "cache"
        )
        return self._build(ref, parts)

    def _verify(self, ref: ModelRef, model_dir: Path, mlmodel: dict[str, Any]) -> None:
        verify_digest(model_dir, mlmodel, ref.digest, self.settings.require_model_digest)

    def _build(self, ref: ModelRef, parts: _Parts) -> LoadedModel:
        try:
            schema = input_schema(parts.signature, self.settings.max_batch_size)
        except UnsupportedSignatureError as e:
            raise ModelRefusedError(str(e)) from e
        current = self.current
        if current is not None:
            difference = current.schema.same_as(schema)
            if difference is not None:
                raise ModelRefusedError(
                    f"input signature is not compatible with version "
                    f"{current.ref.version}: {difference}"
                )
        predictor: Predictor
        raw = parts.estimator
        if raw is not None and callable(getattr(raw, "predict", None)):
            predictor = SklearnPredictor(raw, schema.names)
        else:
            predictor = PyfuncPredictor(parts.pyfunc, schema.names)
        example = _usable_example(parts.example_rows, schema)
        _check_prediction(predictor, schema, example)
        bins = parts.metadata.get(BINS_METADATA_KEY)
        return LoadedModel(
            ref=ref,
            schema=schema,
            predictor=predictor,
            signature=dict(parts.signature or {}),
            input_example=example,
            bins=None
            if not bins
            else FeatureBinCounter(self.metrics, bins["features"], schema.names),
            loader=parts.loader,
        )

    def _load_direct(self, ref: ModelRef) -> _Parts | None:
        """A scikit-learn model read without MLflow; None when MLflow's loader is needed."""
        rest = self._registry
        if rest is None:
            return None
        deadline = time.monotonic() + self.settings.load_timeout_seconds
        with tempfile.TemporaryDirectory(prefix="beyondfit-model-") as tmp:
            try:
                mlmodel = rest.fetch_model(ref.name, ref.version, Path(tmp), self.policy, deadline)
                self._verify(ref, Path(tmp), mlmodel)
                model = load_sklearn(Path(tmp), mlmodel, self.policy)
                self.cache.put(ref, Path(tmp), ["MLmodel", *files_to_fetch(mlmodel, self.policy)])
            except NeedsMlflowError as e:
                log.info(
                    "loading through MLflow",
                    extra={"model_version": ref.version, "reason": str(e)},
                )
                return None
        return _Parts(
            model.signature, model.metadata, model.estimator, None, model.example_rows, "direct"
        )

    def _load_with_mlflow(self, ref: ModelRef) -> _Parts:
        """MLflow's client fetches the model (any artifact store it reaches). Unless the
        unsafe switch is on, only the download is MLflow's: the files are read under the
        trust policy, exactly as the direct loader reads them."""
        import mlflow.pyfunc

        if self.settings.mlflow_tracking_uri:
            mlflow.set_tracking_uri(self.settings.mlflow_tracking_uri)
        if not self.policy.allow_unsafe:
            import mlflow.artifacts

            with tempfile.TemporaryDirectory(prefix="beyondfit-model-") as tmp:
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{ref.name}/{ref.version}", dst_path=tmp
                    )
                )
                mlmodel = read_mlmodel(local / "MLmodel")
                files_to_fetch(mlmodel, self.policy)
                self._verify(ref, local, mlmodel)
                model = load_sklearn(local, mlmodel, self.policy)
                self.cache.put(ref, local, ["MLmodel", *files_to_fetch(mlmodel, self.policy)])
            return _Parts(
                model.signature, model.metadata, model.estimator, None, model.example_rows, "mlflow"
            )
        # suppress_warnings skips the scan of every installed package against the model's
        # requirements (seconds, on every load).
        pyfunc = mlflow.pyfunc.load_model(
            f"models:/{ref.name}/{ref.version}", suppress_warnings=True
        )
        meta = pyfunc.metadata
        try:
            raw = pyfunc.get_raw_model()
        except Exception:
            raw = None
        return _Parts(
            meta.signature.to_dict() if meta.signature is not None else None,
            meta.metadata or {},
            raw,
            pyfunc,
            _pyfunc_example_rows(pyfunc),
            "mlflow",
        )

    def _swap(self, model: LoadedModel) -> None:
        old, self.current = self.current, model
        m = self.metrics
        if old is not None:
            m.model_info.labels(
                old.ref.name, old.ref.version, old.ref.alias or "", old.ref.run_id or ""
            ).set(0)
        m.model_info.labels(
            model.ref.name, model.ref.version, model.ref.alias or "", model.ref.run_id or ""
        ).set(1)
        m.model_loaded.set(1)
        m.model_reloads.labels("success").inc()
        if model.loader != "cache":
            self.cache.remember(model.ref)
        if old is None:
            self.first_load.set()
            if self._shared_dir is not None:
                (self._shared_dir / "model-loaded").touch()
                (self._shared_dir / f"loading-{os.getpid()}").unlink(missing_ok=True)
        log.info(
            "model in service",
            extra={
                "model_name": model.ref.name,
                "model_version": model.ref.version,
                "previous_version": old.ref.version if old else None,
                "loader": model.loader,
            },
        )

    async def _try_load(self, ref: ModelRef) -> None:
        # The direct download checks its own deadline as bytes arrive; this one also bounds
        # MLflow's client and deserialization. A thread cannot be stopped: one that overruns
        # is abandoned (its result dropped) and this worker moves on.
        timeout = self.settings.load_timeout_seconds
        limit = timeout + max(10.0, timeout / 2)
        try:
            model = await asyncio.wait_for(asyncio.to_thread(self.load, ref), limit)
        except TimeoutError:
            raise RegistryError(
                f"loading {ref.name} version {ref.version} took longer than {limit:g} s"
            ) from None
        except ModelRefusedError as e:
            self._refuse(ref, str(e))
            return
        except Exception as e:
            # A download that failed says nothing about the version; files that arrived and
            # cannot be loaded, several times in a row, mean a broken version: refuse it
            # instead of fetching it again every interval, forever.
            if not isinstance(e, RegistryError):
                failures = self._failures.get(ref.version, 0) + 1
                self._failures[ref.version] = failures
                if failures >= self.settings.load_failures_before_refusal:
                    self._refuse(ref, f"failed to load {failures} times, last: {e}")
                    return
            raise RuntimeError(f"loading {ref.name} version {ref.version} failed: {e}") from e
        self._failures.pop(ref.version, None)
        self._swap(model)

    def _refuse(self, ref: ModelRef, reason: str) -> None:
        self._refused.add(ref.version)
        self.metrics.model_reloads.labels("refused").inc()
        log.error(
            "model version refused, keeping the current one",
            extra={
                "model_name": ref.name,
                "model_version": ref.version,
                "reason": reason,
                "serving_version": self.current.ref.version if self.current else None,
            },
        )

    async def _serve_kept_copy(self) -> None:
        """With no model and the registry unreachable: serve the last version this server
        served, from the copy kept on the pod (tried once per process)."""
        if self.current is not None or self._cache_tried:
            return
        self._cache_tried = True
        try:
            model = await asyncio.to_thread(self.load_cached)
        except Exception as e:
            log.error("the kept model copy cannot serve", extra={"error": str(e)[:500]})
            return
        if model is not None:
            log.warning(
                "registry unreachable: serving the kept copy of the last version",
                extra={"model_version": model.ref.version},
            )
            self._swap(model)

    # -- the background task --------------------------------------------------------------
    async def run(self) -> None:
        """Load with backoff, then watch the alias. Runs until cancelled."""
        backoff = 0.5
        while True:
            try:
                ref = await asyncio.to_thread(self.resolve)
                wanted = self.current is None or ref.version != self.current.ref.version
                if wanted and ref.version not in self._refused:
                    await self._try_load(ref)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Either the registry could not be asked or the new version could not be
                # loaded: both mean the served version cannot follow the registry.
                self.metrics.model_reloads.labels("error").inc()
                if isinstance(e, RegistryError):
                    await self._serve_kept_copy()
                level = logging.WARNING if self.current is not None else logging.ERROR
                log.log(
                    level,
                    "model registry check failed",
                    extra={"error": str(e)[:500], "retry_in_s": backoff},
                )
                if self.current is None or self.settings.reload_interval_seconds == 0:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.load_retry_max_seconds)
                    continue
            if self.settings.reload_interval_seconds == 0 and self.current is not None:
                return
            await asyncio.sleep(self.settings.reload_interval_seconds if self.current else backoff)


@dataclass(frozen=True)
class _Parts:
    """One model version as either loader returns it, before the checks."""

    signature: dict[str, Any] | None
    metadata: dict[str, Any]
    estimator: Any
    pyfunc: Any
    example_rows: list[dict[str, Any]] | None
    loader: str


class ModelCache:
    """The files of model versions this server served, under DIR/NAME/VERSION with the
    sha256 of each file, and which version served last (DIR/NAME/last-good). Written by any
    worker, atomically (a new directory renamed into place), read by a worker that starts
    while the registry is unreachable."""

    def __init__(self, root: Path, registry: str, name: str) -> None:
        # versions are numbered per registry: the copies of two registries never mix
        registry_key = hashlib.sha256(registry.encode()).hexdigest()[:16]
        self.root = root / registry_key / name.replace("/", "_")

    def put(self, ref: ModelRef, model_dir: Path, files: list[str]) -> None:
        final = self.root / ref.version
        if final.exists():
            if self._intact(final):
                return
            shutil.rmtree(final, ignore_errors=True)  # a damaged copy: replaced by this one
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{ref.version}-", dir=self.root))
            digests = {}
            for relative in files:
                target = inside(staging, relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(inside(model_dir, relative), target)
                digests[relative] = sha256_of(target)
            (staging / "digests.json").write_text(
                json.dumps({"ref": ref.__dict__, "sha256": digests})
            )
            try:
                staging.rename(final)
            except OSError:  # a sibling worker put it first
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as e:
            log.warning("cannot keep a copy of the model", extra={"error": str(e)})

    def remember(self, ref: ModelRef) -> None:
        """Marks `ref` as the last version served, and drops the copies of older ones."""
        if not (self.root / ref.version).is_dir():
            return
        try:
            pointer = self.root / f".last-good-{os.getpid()}"
            pointer.write_text(ref.version)
            pointer.replace(self.root / "last-good")
            for entry in self.root.iterdir():
                if entry.is_dir() and entry.name != ref.version and entry.name[0] != ".":
                    shutil.rmtree(entry, ignore_errors=True)
        except OSError as e:
            log.warning("cannot record the last-good model", extra={"error": str(e)})

    @staticmethod
    def _intact(model_dir: Path) -> bool:
        try:
            recorded = json.loads((model_dir / "digests.json").read_text())
            return all(
                sha256_of(inside(model_dir, relative)) == digest
                for relative, digest in recorded["sha256"].items()
            )
        except (OSError, ValueError, KeyError, UntrustedModelError):
            return False

    def last_good(self) -> tuple[ModelRef, Path] | None:
        try:
            version = (self.root / "last-good").read_text().strip()
        except OSError:
            return None
        model_dir = self.root / version
        try:
            recorded = json.loads((model_dir / "digests.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelRefusedError(f"the kept copy of version {version} is unreadable") from e
        for relative, digest in recorded["sha256"].items():
            if sha256_of(inside(model_dir, relative)) != digest:
                raise ModelRefusedError(
                    f"the kept copy of version {version} does not match its recorded sha256 "
                    f"({relative})"
                )
        return ModelRef(**recorded["ref"]), model_dir


def _default_cache_dir() -> Path:
    """Next to the server's metrics (so it lives as long as the server, and survives its
    workers), else under $TMPDIR."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:
        return Path(shared) / "model-cache"
    return Path(tempfile.gettempdir()) / "beyondfit-model-cache"


def _pyfunc_example_rows(pyfunc: Any) -> list[dict[str, Any]] | None:
    try:
        example = pyfunc.input_example
    except Exception:  # an example that cannot be read is treated as absent
        return None
    if example is not None and hasattr(example, "to_dict"):
        rows: list[dict[str, Any]] = example.to_dict(orient="records")
        return rows
    return None


def _usable_example(rows: list[dict[str, Any]] | None, schema: InputSchema) -> list[dict[str, Any]]:
    """The logged input example as rows; a row of zeros when the model has none that fits."""
    if rows and all(set(r) == set(schema.names) for r in rows):
        return [{k: _json_value(v) for k, v in r.items()} for r in rows]
    zero = {"boolean": False, "long": 0, "integer": 0, "string": ""}
    return [{c.name: zero.get(c.type, 0.0) for c in schema.columns}]


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_prediction(
    predictor: Predictor, schema: InputSchema, example: list[dict[str, Any]]
) -> None:
    rows = schema.model_input(example)
    try:
        out = predictor.predict(rows)
    except Exception as e:
        raise ModelRefusedError(f"prediction on the input example failed: {e}") from e
    if len(out.labels) != len(rows):
        raise ModelRefusedError(f"{len(rows)} example rows gave {len(out.labels)} predictions")
    if out.labels.dtype.kind == "f" and not np.isfinite(out.labels).all():
        raise ModelRefusedError("prediction on the input example is not finite")
    if out.probabilities is not None and not np.isfinite(out.probabilities).all():
        raise ModelRefusedError("class probabilities on the input example are not finite")


def direct_registry(settings: Settings) -> RestRegistry | None:
    """The direct loader's REST client (model_loader auto and an http(s) tracking URI), else
    None: models then load through MLflow."""
    if settings.model_loader != "auto":
        return None
    try:
        return RestRegistry(settings.mlflow_tracking_uri or "")
    except NeedsMlflowError:
        return None


def warm_imports(settings: Settings) -> None:
    """Imports what loading a model needs (scikit-learn and skops; MLflow too when the model
    will load through it): seconds of CPU. Called when the app is built, so under gunicorn's
    preload_app it happens once in the master and every worker starts with it done, instead
    of each worker paying it after the fork, in parallel, before its first load."""
    import sklearn.pipeline  # noqa: F401
    import skops.io  # noqa: F401

    if direct_registry(settings) is None:
        import mlflow.pyfunc
        import mlflow.sklearn  # noqa: F401


def configure_mlflow_client() -> None:
    """Fail fast on an unreachable registry: the store retries with its own backoff, so
    MLflow's long default retry loop would only delay readiness."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
