#!/usr/bin/env bash
# Profiles the service's workers under load with py-spy (see bench/profile.py --help).
# py-spy goes into a throwaway venv (/tmp/benchvenv), never into the project's .venv.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
apt_install wrk
[ -x .venv/bin/python ] || die "no .venv: run 'make setup' first"
if [ ! -x /tmp/benchvenv/bin/py-spy ]; then
  python3 -m venv /tmp/benchvenv
  /tmp/benchvenv/bin/pip install -q py-spy==0.4.3
fi
exec .venv/bin/python bench/profile.py "$@"
