#!/usr/bin/env bash
# Static checks: ruff (lint + format) over the Python, mypy --strict over app/ and training/,
# yamllint and ansible-lint (profile production, offline) over the playbooks, roles and
# inventories (.yamllint, .ansible-lint).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
# The workflows (actionlint, which runs ShellCheck on every `run:` step) and the repository's
# shell scripts (ShellCheck, warnings and errors); scripts/setup-ci.sh installs both.
bash scripts/setup-ci.sh
log "actionlint"
actionlint
log "shellcheck"
git ls-files -z -- '*.sh' .ci/run | xargs -0 shellcheck -x -P SCRIPTDIR --severity=warning
log "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
log "mypy"
.venv/bin/mypy
log "yamllint"
.venv/bin/yamllint --strict .
log "ansible-lint"
.venv/bin/ansible-lint --offline
