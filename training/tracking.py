"""MLflow's tracking URI for one block of code, then put back as it was.

``mlflow.set_tracking_uri`` changes process-wide state (a module global and the
``MLFLOW_TRACKING_URI`` environment variable, which child processes inherit). A library
call such as ``train(config)`` given its own server must not leave the caller pointing at it
afterwards, e.g. a later caller whose server is gone by then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "MLFLOW_TRACKING_URI"


@contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """Inside the block MLflow talks to ``uri`` (unchanged when ``uri`` is empty)."""
    if not uri:
        yield
        return
    import mlflow
    from mlflow.tracking._tracking_service import utils  # holds the URI set by set_tracking_uri

    saved_global: str | None = utils._tracking_uri
    saved_env = os.environ.get(ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        # None is MLflow's "never set" (it also removes the environment variable) ...
        utils.set_tracking_uri(saved_global)  # type: ignore[arg-type]
        # ... and the caller's own variable, if there was one, comes back as it was
        if saved_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved_env
