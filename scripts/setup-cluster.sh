#!/usr/bin/env bash
# scripts/setup-cluster.sh: what `scripts/test.sh cluster` needs before its tests: a running
# local cluster (cluster/up.sh builds or reuses the cached binaries and is idempotent).
. "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/cluster/up.sh" >/dev/null
