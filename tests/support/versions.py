"""The non-Python pins of scripts/versions.env, read the way the scripts source them."""

from __future__ import annotations

from pathlib import Path

VERSIONS_ENV = Path(__file__).resolve().parents[2] / "scripts" / "versions.env"


def pinned_versions() -> dict[str, str]:
    """NAME -> value of every ``NAME=value`` line (comments and blank lines skipped)."""
    out = {}
    for raw in VERSIONS_ENV.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out
