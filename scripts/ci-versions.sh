#!/usr/bin/env bash
# scripts/ci-versions.sh: writes every NAME=value pin of scripts/versions.env to
# $GITHUB_OUTPUT, so the workflows' set-up steps (actions/setup-python, actions/setup-go in
# .github/actions/setup) take PYTHON_MIN and GO_VERSION from the one place for pins.
# Creates nothing else (the caches are restored after it, as the runner user).
set -euo pipefail
[ -n "${GITHUB_OUTPUT:-}" ] || { echo "GITHUB_OUTPUT is not set" >&2; exit 2; }
grep -E '^[A-Z][A-Z0-9_]*=' "$(dirname "$0")/versions.env" | sed 's/"//g' >>"$GITHUB_OUTPUT"
