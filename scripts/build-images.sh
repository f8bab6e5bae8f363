#!/usr/bin/env bash
# scripts/build-images.sh [service|mlflow|all]: builds the container images (`make image`).
#
#   localhost/beyondfit:<version>         the model service   (Dockerfile)
#   localhost/beyondfit-mlflow:<version>  the MLflow server   (docker/mlflow.Dockerfile)
#
# <version> is the service chart's appVersion (charts/beyondfit/Chart.yaml), so the charts
# install what this builds by default; BEYONDFIT_IMAGE_TAG overrides it. Each image is also
# tagged with the short git revision when there is one.
#
# Engine: podman if installed, else docker if its daemon answers (BEYONDFIT_CONTAINER_ENGINE
# forces one). Base image: BEYONDFIT_BASE_IMAGE if set; else the Dockerfiles' default, the
# `ARG BASE_IMAGE=` line of Dockerfile (the one place for the pin, today
# python:3.11.10-slim-bookworm by tag and digest; tests/images checks docker/mlflow.Dockerfile
# pins the same) when it is present or a registry can be reached; else the debootstrap
# stand-in localhost/debian-python:bookworm (scripts/base-image.sh).
#
# OCI labels: version = <version> above; revision = `git rev-parse HEAD` (with "-dirty" when
# the work tree has changes); source = BEYONDFIT_SOURCE_URL if set, else the origin remote's
# URL (credentials stripped), else PROJECT_URL below; created = the commit's time.
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

what="${1:-all}"
case "$what" in service|mlflow|all) ;; *) die "usage: $0 [service|mlflow|all]" ;; esac

STANDIN_IMAGE="localhost/debian-python:bookworm"
# The project's home, for the org.opencontainers.image.source label when neither
# BEYONDFIT_SOURCE_URL nor a git remote says otherwise (this checkout has no remote).
PROJECT_URL="https://github.com/beyondfit/beyondfit"
DEFAULT_BASE="$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -1)"

engine="${BEYONDFIT_CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v podman >/dev/null; then engine=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  else die "neither podman nor a running docker engine: run scripts/setup-images.sh"; fi
fi

engine_args=()
if [ "$engine" = podman ]; then
  # PLATFORM.md: crun fails here (cgroups hybrid mode) and the sandbox cannot raise rlimits;
  # the docker format keeps HEALTHCHECK; pip in RUN steps reaches the index over the host's
  # network with the host's CA bundle.
  [ -x /usr/sbin/runc ] && engine_args+=(--runtime /usr/sbin/runc)
  engine_args+=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --format docker
                --network host -v /etc/ssl/certs:/etc/ssl/certs:ro)
else
  engine_args+=(--network host)
fi

have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }
registry_reachable() { timeout 5 bash -c '</dev/tcp/registry-1.docker.io/443' 2>/dev/null; }

base="${BEYONDFIT_BASE_IMAGE:-}"
if [ -z "$base" ]; then
  if have_image "$DEFAULT_BASE" || registry_reachable; then
    base="$DEFAULT_BASE"
  else
    log "no container registry reachable: building on the stand-in base $STANDIN_IMAGE"
    [ "$engine" = podman ] || die "the stand-in base is built with podman; set BEYONDFIT_BASE_IMAGE"
    bash scripts/base-image.sh
    base="$STANDIN_IMAGE"
  fi
fi

version="${BEYONDFIT_IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/beyondfit/Chart.yaml)}"
[ -n "$version" ] || die "no version: set BEYONDFIT_IMAGE_TAG or appVersion in charts/beyondfit/Chart.yaml"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
short="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [ -n "$short" ] && [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then revision="$revision-dirty"; fi
# A remote URL may carry credentials (https://user:token@host/...): never put them in a label.
# scp-like remotes (git@host:org/repo.git) become https://host/org/repo.git.
remote_url="$(git remote get-url origin 2>/dev/null || true)"
remote_url="$(printf '%s' "$remote_url" | sed -E \
  -e 's#^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@#\1#' \
  -e 's#^[^/:@]+@([^/:]+):#https://\1/#')"
source_url="${BEYONDFIT_SOURCE_URL:-${remote_url:-$PROJECT_URL}}"
# The commit's time, not the build's: rebuilding the same commit gives the same image.
created="$(git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || true)"
created="${created:-1970-01-01T00:00:00Z}"

build_args=(--build-arg "BASE_IMAGE=$base")
# The per-build labels go on the command line, not through the Dockerfiles' ARG-based LABEL:
# buildah (podman 4.3) keys its layer cache on the LABEL line as written, so a new REVISION
# reused the old LABEL layer and the image kept the previous commit's labels. `--label` is a
# step of its own with the values in it (docker build takes it too), and still costs no layer
# rebuild. The Dockerfiles' LABELs keep the defaults for a bare `build`.
oci=org.opencontainers.image
build_args+=(--label "$oci.version=$version" --label "$oci.revision=$revision"
             --label "$oci.source=$source_url" --label "$oci.created=$created")
# pip in the builder trusts the host's CA bundle (mounted read-only above with podman), so a
# TLS-inspecting proxy in front of the package index works inside the build as outside.
pip_cert="${PIP_CERT:-}"
if [ -z "$pip_cert" ] && [ "$engine" = podman ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  pip_cert=/etc/ssl/certs/ca-certificates.crt
fi
[ -n "$pip_cert" ] && build_args+=(--build-arg "PIP_CERT=$pip_cert")
[ -n "${PIP_INDEX_URL:-}" ] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")

build() {  # build NAME DOCKERFILE
  local name=$1 file=$2 t0=$SECONDS
  local tags=(-t "$name:$version")
  [ -n "$short" ] && tags+=(-t "$name:$short")
  log "building $name:$version from $file on $base ($engine)"
  "$engine" build "${engine_args[@]}" "${build_args[@]}" "${tags[@]}" -f "$file" . >&2
  local size
  size="$("$engine" image inspect --format '{{.Size}}' "$name:$version")"
  log "built $name:$version in $((SECONDS - t0)) s: $((size / 1024 / 1024)) MiB"
}

[ "$what" = mlflow ] || build localhost/beyondfit Dockerfile
[ "$what" = service ] || build localhost/beyondfit-mlflow docker/mlflow.Dockerfile
