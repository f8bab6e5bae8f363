#!/usr/bin/env bash
# Static checks: ruff (lint + format) over the Python, mypy --strict over app/ and training/.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
log "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
log "mypy"
.venv/bin/mypy
