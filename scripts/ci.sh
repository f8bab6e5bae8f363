#!/usr/bin/env bash
# scripts/ci.sh COMMAND [ARG...]: how the GitHub Actions workflows (.github/workflows) run a
# repository command: `scripts/ci.sh make test-unit`, `scripts/ci.sh scripts/deploy.sh ...`.
# The command is the one a developer types; this only adapts the hosted runner to what the
# scripts expect of a machine (README: root for apt, podman, iptables):
#
#   - the caches go to the invoking user's home, where actions/cache saves and restores them
#     (.github/actions/setup): BEYONDFIT_CACHE ~/.cache/beyondfit (Go tools, schemas, venvs),
#     PIP_CACHE_DIR ~/.cache/pip, GOCACHE ~/.cache/go-build, GOMODCACHE ~/go/pkg/mod;
#     registry logins (docker/login-action) are read from ~/.docker/config.json;
#   - git trusts the checkout when root runs it (the runner user owns it);
#   - as a user with password-less sudo (the runner), COMMAND runs under sudo with this
#     environment and PATH kept (setup-python's and setup-go's tools stay first).
#
# Outside GitHub Actions (GITHUB_ACTIONS unset) nothing is changed: COMMAND runs as it is.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
cd "$(dirname "$0")/.."

if [ "${GITHUB_ACTIONS:-}" = true ] && [ -z "${BEYONDFIT_CI_ROOT:-}" ]; then
  export BEYONDFIT_CACHE="${BEYONDFIT_CACHE:-$HOME/.cache/beyondfit}"
  export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
  export GOCACHE="${GOCACHE:-$HOME/.cache/go-build}"
  export GOMODCACHE="${GOMODCACHE:-$HOME/go/pkg/mod}"
  export DOCKER_CONFIG="${DOCKER_CONFIG:-$HOME/.docker}"
  export REGISTRY_AUTH_FILE="${REGISTRY_AUTH_FILE:-$DOCKER_CONFIG/config.json}"
  # safe.directory is honoured from the command scope, which these variables are.
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0="$PWD"
  export BEYONDFIT_CI_ROOT=1
  if [ "$(id -u)" != 0 ]; then
    exec sudo --preserve-env env "PATH=$PATH" "$@"
  fi
fi
exec "$@"
