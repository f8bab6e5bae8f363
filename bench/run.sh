#!/usr/bin/env bash
# Side-by-side serving benchmark (see bench/README.md). `make bench` runs it.
#   bench/run.sh            full run (about 13 minutes, budget 15)
#   bench/run.sh --quick    smoke run (about 3-5 minutes)
#   bench/run.sh --help     every option of bench/bench.py
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
apt_install wrk
[ -x .venv/bin/python ] || die "no .venv: run 'make setup' first"
exec .venv/bin/python bench/bench.py "$@"
