#!/usr/bin/env bash
# Creates .venv with the pinned packages. The environment itself lives in the cache,
# keyed by a hash of the requirement files, so a fresh clone on a warm machine links
# it in seconds; a change to any pin builds a new one.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

py=$(command -v python3.11 || command -v python3) || die "python3 not found"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 needed, found $("$py" -V)"

key=$(cat requirements/app.in requirements/dev.in requirements/constraints.txt | sha256sum | cut -c1-16)
venv="$BEYONDFIT_CACHE/venvs/$key"
mkdir -p "$BEYONDFIT_CACHE/venvs"
# One builder per environment: a second checkout waits instead of deleting a half-built one.
exec 8>"$venv.lock"
flock 8
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "building the Python environment $venv (a few minutes, once)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -r requirements/dev.in
  touch "$venv/.complete"
fi
# Mark this environment as used; environments of older pins unused for a week are removed
# (each is about 2 GB).
touch "$venv/.complete"
for old in "$BEYONDFIT_CACHE"/venvs/*; do
  [ "$old" = "$venv" ] || [ ! -f "$old/.complete" ] && continue
  if [ -n "$(find "$old/.complete" -mtime +7 2>/dev/null)" ]; then
    log "removing the unused Python environment $old"
    rm -rf "$old"
  fi
done
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  rm -rf .venv
  ln -s "$venv" .venv
fi
