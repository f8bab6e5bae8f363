"""Service settings: one class, read from the environment, never instantiated at import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told. Environment variables use the prefix BEYONDFIT_."""

    model_config = SettingsConfigDict(env_prefix="BEYONDFIT_", extra="ignore")

    model_uri: str = "models:/beyondfit-classifier@champion"
    """Registry URI of the model to serve: `models:/NAME@ALIAS` (watched) or `models:/NAME/N`."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "BEYONDFIT_MLFLOW_TRACKING_URI"),
    )
    """MLflow tracking server; MLflow's own default applies when unset."""

    model_loader: Literal["auto", "mlflow"] = "auto"
    """`auto`: a scikit-learn model behind an http(s) tracking server is read directly (REST
    calls and the model's own serializer, no `import mlflow`: a faster start); anything else
    loads through mlflow.pyfunc. `mlflow`: always mlflow.pyfunc."""

    trusted_types: Annotated[tuple[str, ...], NoDecode] = ("sklearn.tree._tree.Tree",)
    """Types a model's skops file may hold beyond skops' safe defaults (scikit-learn, numpy,
    scipy), comma-separated; the default is what the trainer's estimators need. The list in
    a model's own MLmodel file is never used: it is written by whoever registers the model."""

    allow_unsafe_models: bool = False
    """Also load pickle and cloudpickle files, models with custom code paths, and models
    without the sklearn flavor through mlflow.pyfunc: whoever can register a model version
    then runs code in the service. Off in every shipped environment."""

    require_model_digest: bool = False
    """Refuse model versions without the sha256 tag the trainer records at registration
    (beyondfit.model_sha256). A version with the tag is always checked against it."""

    reload_interval_seconds: float = Field(default=30.0, ge=0)
    """How often each worker checks the alias for a new version; 0 turns watching off."""

    load_retry_max_seconds: float = Field(default=30.0, gt=0)
    """Ceiling of the exponential backoff while the first load keeps failing."""

    load_timeout_seconds: float = Field(default=300.0, gt=0)
    """Overall deadline of one model download: a registry or artifact store that trickles
    bytes fails the load instead of holding it forever."""

    load_failures_before_refusal: int = Field(default=3, ge=1)
    """A version whose files were downloaded but failed to load this many times in a row
    (truncated, corrupt) is refused like a failed check instead of retried forever."""

    model_cache_dir: Path | None = None
    """Where each worker keeps the files of the last version it served, with their sha256,
    to load from when the registry is unreachable at start (a replacement worker, a
    restarted container). Default: model-cache in PROMETHEUS_MULTIPROC_DIR (it lives as long
    as the server), else $TMPDIR/beyondfit-model-cache. The chart puts it on /tmp (an
    emptyDir that outlives container restarts)."""

    replacement_load_timeout_seconds: float = Field(default=90.0, ge=0)
    """A worker that replaces a dead one waits this long for its model before it accepts
    connections (the first workers of a server accept at once and report not ready)."""

    api_key: str | None = None
    """When set, every endpoint but the health checks and /metrics requires it (X-API-Key or
    Bearer). Set but empty (e.g. an empty key in a Secret) is an error: the server does not
    start, rather than serve without authentication."""

    max_batch_size: int = Field(default=1000, ge=1)
    """Most rows one request may carry."""

    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest request body: a larger Content-Length gets 413 before the body is read, and a
    body sent without one is cut with 413 once it passes the limit."""

    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection whose request line and headers are not complete this long after it opened
    (or after its previous response) is closed."""

    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """The whole request body must arrive within this long after the headers; else 408."""

    max_connections: int = Field(default=1000, ge=1)
    """Open connections per worker; one more is closed as soon as it is accepted."""

    log_level: str = "INFO"
    """Root log level."""

    access_log: bool = True
    """Log one JSON line per request (health and metrics requests excluded)."""

    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "PROMETHEUS_MULTIPROC_DIR", "BEYONDFIT_PROMETHEUS_MULTIPROC_DIR"
        ),
    )
    """Shared directory for metrics of all gunicorn workers. Unset (or empty): gunicorn makes a
    new one for each server (so two servers on one host never share one) and removes it at
    exit; the app alone (no gunicorn) then runs in single-process mode."""

    host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    """Address gunicorn binds."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port gunicorn binds."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """When set, gunicorn also binds this port and it serves /metrics alone; the API port then
    answers 404 for /metrics (a NetworkPolicy can admit Prometheus to this port only).
    Unset: /metrics is served on the API port."""

    workers: int = Field(default=2, ge=1)
    """Gunicorn worker processes."""

    graceful_timeout: int = Field(default=20, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM."""

    enable_constant_endpoint: bool = False
    """Expose POST /bench/constant, a constant answer used by the benchmark as the framework
    floor. Off in production."""

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_key")
    @classmethod
    def _no_empty_key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "BEYONDFIT_API_KEY is set but empty (an empty Secret value?): refusing to "
                "start without authentication; unset it to run without an API key"
            )
        return value

    @field_validator("trusted_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value
