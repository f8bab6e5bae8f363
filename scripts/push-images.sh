#!/usr/bin/env bash
# scripts/push-images.sh push PREFIX | tags: publishes the images that scripts/build-images.sh
# built (localhost/beyondfit:<version>, localhost/beyondfit-mlflow:<version>, <version> the
# chart's appVersion) as PREFIX/beyondfit and PREFIX/beyondfit-mlflow (PREFIX lower-cased,
# as registries want it; e.g. ghcr.io/<owner>), once per tag of `tags`:
#
#   <commit sha>   always: GITHUB_SHA, else `git rev-parse HEAD`
#   X.Y.Z, X.Y     when GITHUB_REF is a release tag refs/tags/vX.Y.Z (no pre-release part)
#
# `push` prints `name=<repository> digest=<sha256:...>` per image and, under GitHub Actions,
# writes service-image, service-digest, mlflow-image, mlflow-digest and tag (the commit sha)
# to $GITHUB_OUTPUT for the attestation and deploy steps. The engine is build-images.sh's
# (podman, else docker; BEYONDFIT_CONTAINER_ENGINE forces one); registry credentials come
# from the engine's login (REGISTRY_AUTH_FILE / DOCKER_CONFIG, see scripts/ci.sh).
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

tags() {
  local sha="${GITHUB_SHA:-$(git rev-parse HEAD)}" ref="${GITHUB_REF:-}"
  [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "not a commit sha: $sha"
  echo "$sha"
  if [[ "$ref" =~ ^refs/tags/v(([0-9]+)\.([0-9]+)\.([0-9]+))$ ]]; then
    echo "${BASH_REMATCH[1]}"
    echo "${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
  fi
}

push() {
  local prefix="${1:-}"
  [ -n "$prefix" ] || die "usage: $0 push PREFIX (e.g. ghcr.io/OWNER)"
  prefix="$(printf '%s' "${prefix%/}" | tr '[:upper:]' '[:lower:]')"
  local engine="${BEYONDFIT_CONTAINER_ENGINE:-}"
  if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
  fi
  local version all name local_image remote tag digest first
  version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/beyondfit/Chart.yaml)"
  mapfile -t all < <(tags)
  [ ${#all[@]} -gt 0 ] || die "no tags to push"
  for name in beyondfit beyondfit-mlflow; do
    local_image="localhost/$name:$version"
    "$engine" image inspect "$local_image" >/dev/null 2>&1 || die "no image $local_image: run scripts/build-images.sh"
    remote="$prefix/$name"
    digest=""
    for tag in "${all[@]}"; do
      "$engine" tag "$local_image" "$remote:$tag"
      log "pushing $remote:$tag"
      if [ "$engine" = podman ]; then
        first="$(mktemp)"
        podman push --digestfile "$first" "$remote:$tag" >&2
        digest="$(cat "$first")"; rm -f "$first"
      else
        docker push "$remote:$tag" >&2
        digest="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$remote:$tag" |
          sed -n "s#^$remote@##p" | head -1)"
      fi
    done
    [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "no digest for $remote (got '$digest')"
    echo "name=$remote digest=$digest"
    if [ -n "${GITHUB_OUTPUT:-}" ]; then
      local key=service
      [ "$name" = beyondfit-mlflow ] && key=mlflow
      printf '%s-image=%s\n%s-digest=%s\n' "$key" "$remote" "$key" "$digest" >>"$GITHUB_OUTPUT"
    fi
  done
  [ -z "${GITHUB_OUTPUT:-}" ] || echo "tag=${all[0]}" >>"$GITHUB_OUTPUT"
}

case "${1:-}" in
  tags) tags ;;
  push) shift; push "$@" ;;
  *) die "usage: $0 push PREFIX | tags" ;;
esac
