#!/usr/bin/env bash
# scripts/setup-ci.sh: installs what checks the GitHub Actions workflows (.github/), for
# `make lint` and the tests/ci layer:
#   - ShellCheck, Debian's package: actionlint runs it on the shell of every `run:` step,
#     and lint.sh on the repository's shell scripts
#   - actionlint, github.com/rhysd/actionlint/cmd/actionlint at ACTIONLINT_VERSION
#     (scripts/versions.env), built with `go install` into $BIN_DIR, skipped when that
#     version is already there
. "$(dirname "$0")/lib.sh"
command -v go >/dev/null || die "go is missing (the machine image provides it at /usr/local/go/bin)"

apt_install shellcheck

exec 9>"$BEYONDFIT_CACHE/.setup-ci.lock"
flock 9
stamp="$BIN_DIR/.actionlint.version"
if [ ! -x "$BIN_DIR/actionlint" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$ACTIONLINT_VERSION" ]; then
  log "go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:--buildvcs=false}" go install -trimpath \
    -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" ||
    die "could not install actionlint $ACTIONLINT_VERSION"
  echo "$ACTIONLINT_VERSION" >"$stamp"
fi
log "workflow tools: actionlint $("$BIN_DIR/actionlint" -version | head -1), shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
