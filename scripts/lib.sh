# Shared helpers for the scripts in scripts/ and cluster/. Source it; do not run it.
# shellcheck shell=bash
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/versions.env
. "$REPO_ROOT/scripts/versions.env"
# Caches live outside the work tree so a fresh clone on a warm machine starts fast.
BEYONDFIT_CACHE="${BEYONDFIT_CACHE:-/var/cache/beyondfit}"
BIN_DIR="$BEYONDFIT_CACHE/bin"
mkdir -p "$BIN_DIR"
export PATH="$BIN_DIR:$REPO_ROOT/.venv/bin:/usr/local/go/bin:$PATH"

log() { printf '\033[1;34m[beyondfit]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[beyondfit] error:\033[0m %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs the Debian packages that are missing, once.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq >/dev/null
    apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
