#!/usr/bin/env bash
# Static checks: ruff (lint + format) over the Python, mypy --strict over app/ and training/,
# yamllint and ansible-lint (profile production, offline) over the playbooks, roles and
# inventories (.yamllint, .ansible-lint).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
log "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
log "mypy"
.venv/bin/mypy
log "yamllint"
.venv/bin/yamllint --strict .
log "ansible-lint"
.venv/bin/ansible-lint --offline
