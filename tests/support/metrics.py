"""Read a /metrics page the way Prometheus does."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def sample_value(
    samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str
) -> float | None:
    """The sum of the samples of `name` whose labels include `labels`; None when there is none."""
    values = [
        v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())
    ]
    return sum(values) if values else None
