"""Service settings: one class, read from the environment, never instantiated at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    reload_interval_seconds: float = Field(default=30.0, ge=0)
    """How often each worker checks the alias for a new version; 0 turns watching off."""

    load_retry_max_seconds: float = Field(default=30.0, gt=0)
    """Ceiling of the exponential backoff while the first load keeps failing."""

    replacement_load_timeout_seconds: float = Field(default=90.0, ge=0)
    """A worker that replaces a dead one waits this long for its model before it accepts
    connections (the first workers of a server accept at once and report not ready)."""

    api_key: str | None = None
    """When set, /predict and the V2 infer endpoint require it (X-API-Key or Bearer)."""

    max_batch_size: int = Field(default=1000, ge=1)
    """Most rows one request may carry."""

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
    """Shared directory for metrics of all gunicorn workers; single-process mode when unset."""

    host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    """Address gunicorn binds."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port gunicorn binds."""

    workers: int = Field(default=2, ge=1)
    """Gunicorn worker processes."""

    graceful_timeout: int = Field(default=20, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM."""

    enable_constant_endpoint: bool = False
    """Expose POST /bench/constant, a constant answer used by the benchmark as the framework
    floor. Off in production."""
