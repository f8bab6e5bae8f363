"""A deliberately leaking WSGI service for the load test's leak verdict (tests only).

It speaks just enough of the beyondfit API for loadtest/locustfile.py: GET /model gives an
input example, POST /predict answers a prediction and keeps LEAK_BYTES of fresh memory for
ever. Every request's arrival time is appended to $LEAKY_LOG, so a test can see the rate.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

LEAK_BYTES = 256 * 1024
_kept: list[bytes] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/model":
        body: dict[str, Any] = {"input_example": [{"x": 1.0}, {"x": 2.0}], "signature": None}
    elif path == "/predict":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        _kept.append(b"x" * LEAK_BYTES)  # written, so resident
        with open(os.environ["LEAKY_LOG"], "a") as log:
            log.write(f"{time.time()}\n")
        body = {"predictions": [0], "model_version": "1"}
    else:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]
