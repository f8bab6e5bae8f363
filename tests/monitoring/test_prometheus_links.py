"""The Prometheus pages that make demo prints and the README names exist on the Prometheus
the project installs (Debian's 2.42 has only the classic UI: /alerts there is a 404)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.monitoring.monhelpers import Prometheus

REPO = Path(__file__).resolve().parents[2]
SOURCES = {
    # what the demo prints once everything answers, and the README's table of links
    "scripts/demo.sh": r"http://127\.0\.0\.1:\$PROMETHEUS_PORT(/[A-Za-z0-9/_-]*)",
    "README.md": r"http://127\.0\.0\.1:9090(/[A-Za-z0-9/_-]*)",
}


def links(source: str) -> set[str]:
    paths = set(re.findall(SOURCES[source], (REPO / source).read_text()))
    return {p for p in paths if not p.startswith("/-/")}  # /-/ready is the script's own probe


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_the_alerts_page_is_given_as_a_full_link(source: str) -> None:
    assert any(p.endswith("/alerts") for p in links(source)), links(source)


@pytest.mark.parametrize(("source", "path"), sorted((s, p) for s in SOURCES for p in links(s)))
def test_each_documented_prometheus_page_answers(
    empty_prometheus: Prometheus, source: str, path: str
) -> None:
    try:
        with urllib.request.urlopen(empty_prometheus.url + path, timeout=10) as r:  # noqa: S310
            status, ctype = r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        status, ctype = e.code, e.headers["Content-Type"]
    assert status == 200, f"{source}: {path}"
    assert ctype.startswith("text/html"), f"{source}: {path}"
