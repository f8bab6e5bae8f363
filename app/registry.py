"""The MLflow registry over its REST API, and scikit-learn models read from their MLmodel file.

`import mlflow` costs about two seconds of CPU in every process that does it (its package
imports tracing, GenAI and dataset modules eagerly), which is most of the gap between a server
start and an in-process `mlflow.pyfunc.load_model`. The service needs little of it: resolve an
alias, fetch three files of one model version, and deserialize a scikit-learn estimator. This
module does exactly that with the standard library, PyYAML and the model's own serializer.

What it does not cover raises `NeedsMlflowError`, and the caller loads with MLflow instead:
a tracking URI that is not http(s), an artifact location the server does not proxy and that is
not on this machine.

A model version is code unless it is proven otherwise, so every file is read under a
`TrustPolicy` (docs/security.md): only skops files, and only with the types the service
trusts (never the list the model's own MLmodel file names); pickle, cloudpickle, custom code
paths and models without the sklearn flavor (MLflow's pyfunc, models-from-code) raise
`UntrustedModelError` unless the operator set the explicit unsafe switch. Every file name the
MLmodel file gives must stay inside the model directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_API = "/api/2.0/mlflow"
_ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"


class NeedsMlflowError(Exception):
    """This registry or model is outside what the direct path reads; use MLflow's loader."""


class RegistryError(Exception):
    """The registry answered with an error, or could not be reached."""


class UntrustedModelError(Exception):
    """The model version breaks the trust policy: it must not be deserialized, ever."""


class CorruptModelError(Exception):
    """A model file that cannot be read (truncated, not the format it claims)."""


@dataclass(frozen=True)
class TrustPolicy:
    """What the service agrees to deserialize."""

    trusted_types: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
    """Types a skops file may hold beyond skops' own safe defaults (scikit-learn, numpy,
    scipy): fully qualified names, as skops.io.get_untrusted_types spells them."""
    allow_unsafe: bool = False
    """Also accept pickle, cloudpickle, custom code paths, MLflow's pyfunc loader and the
    trusted types a model's MLmodel file names: whoever registers a version runs code."""

    def refuse(self, what: str) -> None:
        if not self.allow_unsafe:
            raise UntrustedModelError(
                f"{what}: only skops files are deserialized "
                "(BEYONDFIT_ALLOW_UNSAFE_MODELS=true trusts it; see docs/security.md)"
            )


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str | None
    digest: str | None = None
    """The sha256 of the serialized estimator, recorded by the trainer at registration."""


#: The model version tag in which the trainer records the sha256 of the serialized estimator.
DIGEST_TAG = "beyondfit.model_sha256"


@dataclass(frozen=True)
class SklearnModel:
    """What the service needs of one logged scikit-learn model."""

    estimator: Any
    signature: dict[str, Any] | None
    """The MLmodel `signature` mapping: `inputs`/`outputs` as JSON strings, as MLflow writes it."""
    metadata: dict[str, Any]
    example_rows: list[dict[str, Any]] | None


def _env_true(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes")


class RestRegistry:
    """Read-only calls to an MLflow tracking server, with MLflow's own client settings:
    MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME/PASSWORD (basic),
    MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_HTTP_REQUEST_TIMEOUT."""

    def __init__(self, tracking_uri: str) -> None:
        parsed = urllib.parse.urlsplit(tracking_uri)
        if parsed.scheme not in ("http", "https"):
            raise NeedsMlflowError(f"tracking URI {tracking_uri!r} is not http(s)")
        self.base = tracking_uri.rstrip("/")
        self.scheme = parsed.scheme
        self.timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 120)
        self._headers = {"User-Agent": "beyondfit"}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif user:
            password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"
        self._ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            if _env_true("MLFLOW_TRACKING_INSECURE_TLS", False):
                self._ssl = ssl._create_unverified_context()  # noqa: S323 - the user asked for it
            else:
                self._ssl = ssl.create_default_context(
                    cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
                )

    _deadline: float | None = None

    def _check_deadline(self, what: str) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise RegistryError(f"downloading {what} took longer than the load deadline")

    # -- HTTP -------------------------------------------------------------------------------
    def _open(self, url: str) -> Any:
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310 - http(s) only
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl)  # noqa: S310
        except urllib.error.HTTPError as e:
            raise RegistryError(f"{url.split('?')[0]}: HTTP {e.code}: {_error_message(e)}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RegistryError(f"cannot reach MLflow at {self.base}: {reason}") from e

    def _json(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{_API}{path}?{urllib.parse.urlencode(params)}"
        with self._open(url) as resp:
            body: dict[str, Any] = json.load(resp)
        return body

    # -- registry ---------------------------------------------------------------------------
    def model_version(
        self, name: str, *, alias: str | None = None, version: str | None = None
    ) -> Version:
        """The version an alias points at, or a pinned version."""
        if alias is not None:
            mv = self._json("/registered-models/alias", name=name, alias=alias)["model_version"]
        else:
            assert version is not None
            mv = self._json("/model-versions/get", name=name, version=version)["model_version"]
        tags = {t.get("key"): t.get("value") for t in mv.get("tags") or []}
        return Version(
            mv["name"], str(mv["version"]), mv.get("run_id") or None, tags.get(DIGEST_TAG)
        )

    def fetch_model(
        self,
        name: str,
        version: str,
        dest: Path,
        policy: TrustPolicy,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Downloads the MLmodel file and the files the sklearn loader reads into `dest`;
        returns the parsed MLmodel. A model the policy refuses is refused before any file
        other than MLmodel is fetched. `deadline` (time.monotonic()) bounds the whole
        download: a server that trickles bytes never trips the per-read timeout."""
        self._deadline = deadline
        uri = self._json("/model-versions/get-download-uri", name=name, version=version)[
            "artifact_uri"
        ]
        fetch = self._artifact_fetcher(uri)
        fetch("MLmodel", dest / "MLmodel")
        mlmodel = read_mlmodel(dest / "MLmodel")
        for relative in files_to_fetch(mlmodel, policy):
            target = inside(dest, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            fetch(relative, target)
        return mlmodel

    def _artifact_fetcher(self, uri: str) -> Any:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme == "mlflow-artifacts":
            host = f"{self.scheme}://{parsed.netloc}" if parsed.netloc else self.base
            root = parsed.path.strip("/")

            def fetch_proxied(relative: str, target: Path) -> None:
                url = f"{host}{_ARTIFACTS_API}/{urllib.parse.quote(f'{root}/{relative}')}"
                with self._open(url) as resp, target.open("wb") as out:
                    while chunk := resp.read1(1 << 16):  # what has arrived, not 64 KiB
                        out.write(chunk)
                        self._check_deadline(relative)

            return fetch_proxied
        local = Path(parsed.path) if parsed.scheme in ("", "file") else None
        if local is not None and local.is_dir():

            def fetch_local(relative: str, target: Path) -> None:
                shutil.copyfile(local / relative, target)

            return fetch_local
        raise NeedsMlflowError(f"artifacts at {uri!r} are not proxied by the tracking server")


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
        return f"{body.get('error_code', '')} {body.get('message', '')}".strip() or error.reason
    except ValueError:
        return str(error.reason)


# -- the model directory ----------------------------------------------------------------------
def read_mlmodel(path: Path) -> dict[str, Any]:
    mlmodel = yaml.safe_load(path.read_text())
    if not isinstance(mlmodel, dict):
        raise NeedsMlflowError("the MLmodel file is not a mapping")
    return mlmodel


def inside(model_dir: Path, relative: str) -> Path:
    """`model_dir / relative`, refused unless it stays inside `model_dir` (no absolute path,
    no `..` out of it, no symlink out of it)."""
    base = model_dir.resolve()
    if not relative or Path(relative).is_absolute():
        raise UntrustedModelError(f"file name {relative!r} in MLmodel is not a relative path")
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise UntrustedModelError(f"file name {relative!r} in MLmodel leaves the model directory")
    return target


def _sklearn_flavor(mlmodel: dict[str, Any], policy: TrustPolicy) -> dict[str, Any]:
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict) or not flavor.get("pickled_model"):
        policy.refuse("the model has no sklearn flavor (MLflow's pyfunc loader runs its code)")
        raise NeedsMlflowError("the model has no sklearn flavor")
    if flavor.get("code"):
        policy.refuse("the model brings its own code paths")
        raise NeedsMlflowError("the model brings its own code paths")
    fmt = flavor.get("serialization_format", "cloudpickle")
    if fmt not in ("skops", "cloudpickle", "pickle"):
        raise UntrustedModelError(f"unknown serialization format {fmt!r}")
    if fmt != "skops":
        policy.refuse(f"the model is serialized with {fmt}, which runs code when loaded")
    return flavor


def files_to_fetch(mlmodel: dict[str, Any], policy: TrustPolicy) -> list[str]:
    """The serialized estimator and the input example, relative to the model directory;
    UntrustedModelError for a model the policy refuses or a name that leaves the directory."""
    files = [str(_sklearn_flavor(mlmodel, policy)["pickled_model"])]
    example = mlmodel.get("saved_input_example_info") or {}
    if example.get("artifact_path"):
        files.append(str(example["artifact_path"]))
    probe = Path("/model")
    for relative in files:
        inside(probe, relative)
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_digest(
    model_dir: Path, mlmodel: dict[str, Any], recorded: str | None, required: bool
) -> None:
    """The serialized estimator must be the one the trainer registered (DIGEST_TAG), so a
    file replaced in the artifact store behind the registry's back is refused."""
    if recorded is None:
        if required:
            raise UntrustedModelError(
                f"the model version has no {DIGEST_TAG} tag and BEYONDFIT_REQUIRE_MODEL_DIGEST "
                "is on"
            )
        return
    path = inside(model_dir, str((mlmodel.get("flavors") or {})["sklearn"]["pickled_model"]))
    actual = sha256_of(path)
    if actual != recorded:
        raise UntrustedModelError(
            f"the model file does not match the sha256 the trainer recorded "
            f"({actual[:12]}... != {recorded[:12]}...)"
        )


def load_sklearn(model_dir: Path, mlmodel: dict[str, Any], policy: TrustPolicy) -> SklearnModel:
    """Deserializes the estimator under the trust policy. A skops file is audited first: a
    type outside skops' safe defaults and the policy's trusted types refuses the model
    before any object of it is built."""
    flavor = _sklearn_flavor(mlmodel, policy)
    path = inside(model_dir, str(flavor["pickled_model"]))
    if flavor.get("serialization_format", "cloudpickle") == "skops":
        import skops.io

        trusted = list(policy.trusted_types)
        if policy.allow_unsafe:
            trusted += list(flavor.get("skops_trusted_types") or [])
        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except Exception as e:
            # truncated or corrupt: maybe a bad download, so not refused at once (the store
            # refuses a version only after repeated failures)
            raise CorruptModelError(f"the skops file cannot be read: {e}") from e
        refused = sorted(set(untrusted) - set(trusted))
        if refused:
            raise UntrustedModelError(
                f"the skops file holds types the service does not trust: {refused} "
                "(BEYONDFIT_TRUSTED_TYPES lists the trusted ones; see docs/security.md)"
            )
        estimator = skops.io.load(path, trusted=trusted)
    else:
        if not _env_true("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", True):
            raise UntrustedModelError(
                "deserializing pickled models is disabled "
                "(MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false)"
            )
        with path.open("rb") as f:
            estimator = pickle.load(f)  # noqa: S301 - only with BEYONDFIT_ALLOW_UNSAFE_MODELS
    return SklearnModel(
        estimator=estimator,
        signature=mlmodel.get("signature"),
        metadata=mlmodel.get("metadata") or {},
        example_rows=_example_rows(model_dir, mlmodel),
    )


def _example_rows(model_dir: Path, mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A dataframe input example (split or records orient) as rows; None for anything else."""
    info = mlmodel.get("saved_input_example_info") or {}
    if info.get("type") != "dataframe" or not info.get("artifact_path"):
        return None
    try:
        example = json.loads(inside(model_dir, str(info["artifact_path"])).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(example, dict) and "columns" in example and "data" in example:
        return [dict(zip(example["columns"], row, strict=True)) for row in example["data"]]
    if isinstance(example, list) and all(isinstance(r, dict) for r in example):
        return example
    return None
