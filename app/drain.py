"""Connection draining before shutdown: `python -m app.drain SECONDS` (the pod's preStop hook).

Endpoint removal does not end the keep-alive connections clients already hold to a pod:
they keep sending on them until the server closes them at SIGTERM, and a request sent as an
idle connection closes is lost. So, before SIGTERM, the hook marks the server as draining
(a file in the shared metrics directory, seen by every worker) and waits SECONDS: meanwhile
every response carries `Connection: close`, clients reconnect through the Service to other
pods, and readiness answers 503.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MARKER = "draining"


class DrainState:
    """Whether this server drains; the marker is looked up at most every `ttl` seconds."""

    def __init__(self, ttl: float = 0.25) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self._marker = Path(directory) / MARKER if directory else None
        self._ttl = ttl
        self._checked = 0.0
        self._draining = False

    def __call__(self) -> bool:
        if self._marker is None or self._draining:
            return self._draining
        now = time.monotonic()
        if now - self._checked > self._ttl:
            self._checked = now
            self._draining = self._marker.exists()
        return self._draining


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 5.0
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        print("PROMETHEUS_MULTIPROC_DIR is not set: nothing to mark", file=sys.stderr)
    else:
        (Path(directory) / MARKER).touch()
    time.sleep(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
