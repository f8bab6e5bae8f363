#!/usr/bin/env bash
# scripts/setup-images.sh: installs what building and running the images needs on a Debian
# machine without Docker (PLATFORM.md): podman + buildah with runc (crun fails on this
# kernel's hybrid cgroups), the CNI plugins, uidmap, fuse-overlayfs, slirp4netns, iptables,
# debootstrap, PostgreSQL (for the MLflow image's backend-store test); then builds the
# stand-in base image localhost/debian-python:bookworm (scripts/base-image.sh, cached) for
# machines that cannot pull the pinned python base (ARG BASE_IMAGE in Dockerfile).
. "$(dirname "$0")/lib.sh"

apt_install podman buildah runc containernetworking-plugins uidmap fuse-overlayfs slirp4netns \
  iptables debootstrap ca-certificates
# PostgreSQL server binaries (initdb, postgres, psql) for tests/images/test_mlflow_postgres.py,
# which runs its own throwaway cluster as the postgres user. On a machine where services may
# start, the package starts Debian's own cluster (main, port 5432): stop it again right after
# the install, so the set-up leaves no server running.
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
  apt_install postgresql
  for cluster in $(pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1 "/" $2}'); do
    pg_ctlcluster "${cluster%/*}" "${cluster#*/}" stop || true
  done
fi

command -v podman >/dev/null || die "podman missing after apt-get install"
[ -x /usr/sbin/runc ] || die "runc missing after apt-get install"

# The machine may have a Docker engine that can pull: then the stand-in is not needed, but
# it costs nothing once cached, and the tests use it whenever no registry answers.
if [ -z "${BEYONDFIT_BASE_IMAGE:-}" ]; then
  bash "$REPO_ROOT/scripts/base-image.sh"
fi
log "images: podman $(podman --version | awk '{print $3}'), runc $(/usr/sbin/runc --version | awk 'NR==1{print $3}')"
