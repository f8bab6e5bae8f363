#!/usr/bin/env bash
# scripts/setup-charts.sh: installs what the chart tests (tests/charts) need, pinned in
# scripts/versions.env, into $BIN_DIR (on PATH via lib.sh), each skipped when the binary of
# that version is already there:
#   helm        helm.sh/helm/v3/cmd/helm                  HELM_VERSION
#   kubeconform github.com/yannh/kubeconform/cmd/kubeconform KUBECONFORM_VERSION
#   kube-linter github.com/stackrox/kube-linter/cmd/kube-linter KUBE_LINTER_VERSION (best effort:
#               not served by the module proxy here; the tests then run kube-linter's checks
#               themselves, tests/charts/test_kube_linter.py)
#   kube-score  github.com/zegl/kube-score/cmd/kube-score KUBE_SCORE_VERSION
# and generates kubeconform's JSON schemas offline (GitHub, where they are usually
# downloaded from, cannot be reached), cached under $BEYONDFIT_CACHE/schemas:
#   k8s-<K8S_VERSION>/<K8S_VERSION>-standalone-strict/  from the OpenAPI spec in the
#       k8s.io/kubernetes module (api/openapi-spec/swagger.json)
#   prometheus-operator-<PROMETHEUS_OPERATOR_VERSION>/  from the CRDs in the
#       prometheus-operator module (example/prometheus-operator-crd/*.yaml)
. "$(dirname "$0")/lib.sh"
command -v go >/dev/null || die "go is missing (the machine image provides it at /usr/local/go/bin)"
export GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:--buildvcs=false}"

# One setup at a time (two test runs may start together); the second waits, then skips.
exec 9>"$BEYONDFIT_CACHE/.setup-charts.lock"
flock 9

stamp() { echo "$BIN_DIR/.$1.version"; }
have() { [ -x "$BIN_DIR/$1" ] && [ "$(cat "$(stamp "$1")" 2>/dev/null)" = "$2" ]; }

# go_tool NAME PACKAGE VERSION [LDFLAGS]
go_tool() {
  local name=$1 pkg=$2 version=$3 ldflags=${4:-}
  if have "$name" "$version"; then return 0; fi
  log "go install $pkg@$version"
  local t=$SECONDS
  go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$version" || return 1
  echo "$version" >"$(stamp "$name")"
  log "$name $version installed in $((SECONDS - t)) s"
}

# helm: the version and the default Kubernetes version are link-time variables (helm's
# Makefile sets them); without them `helm version` says "v3.22" and templates assume 1.20.
# Client libraries v0.37 = Kubernetes 1.37, as helm's Makefile derives it.
h=helm.sh/helm/v3
go_tool helm "$h/cmd/helm" "$HELM_VERSION" \
  "-X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean \
   -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=37 \
   -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=37" \
  || die "could not install helm $HELM_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
  "-X main.version=$KUBECONFORM_VERSION" || die "could not install kubeconform $KUBECONFORM_VERSION"
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION" \
  "-X main.version=$KUBE_SCORE_VERSION" || die "could not install kube-score $KUBE_SCORE_VERSION"

# kube-linter: tried once per version and machine; the refusal is remembered so the layer stays fast.
kl_refused="$BEYONDFIT_CACHE/kube-linter-$KUBE_LINTER_VERSION.unavailable"
if ! have kube-linter "$KUBE_LINTER_VERSION" && [ ! -e "$kl_refused" ]; then
  if ! out="$(go_tool kube-linter github.com/stackrox/kube-linter/cmd/kube-linter "$KUBE_LINTER_VERSION" 2>&1)"; then
    printf '%s\n' "$out" | tail -3 >"$kl_refused"
    log "kube-linter $KUBE_LINTER_VERSION cannot be had here: $(tail -2 "$kl_refused" | tr '\n' ' ')"
    log "the chart tests run kube-linter's default checks in pytest instead (tests/charts/test_kube_linter.py)"
  fi
fi

# ---- kubeconform schemas ------------------------------------------------------------------
python_with_yaml() {
  local p
  for p in "$REPO_ROOT/.venv/bin/python" python3; do
    if "$p" -c 'import yaml' 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no python with PyYAML (run make setup)"
}

module_dir() {  # module_dir MODULE VERSION -> the unpacked module in the Go module cache
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

k8s_dir="$BEYONDFIT_CACHE/schemas/k8s-$K8S_VERSION/$K8S_VERSION-standalone-strict"
if [ ! -s "$k8s_dir/deployment-apps-v1.json" ]; then
  log "generating Kubernetes $K8S_VERSION JSON schemas"
  dir="$(module_dir k8s.io/kubernetes "$K8S_VERSION")"
  [ -f "$dir/api/openapi-spec/swagger.json" ] || die "no api/openapi-spec/swagger.json in k8s.io/kubernetes@$K8S_VERSION"
  rm -rf "$k8s_dir.tmp"
  python3 "$REPO_ROOT/scripts/gen-kube-schemas.py" k8s "$dir/api/openapi-spec/swagger.json" "$k8s_dir.tmp" >&2
  rm -rf "$k8s_dir" && mv "$k8s_dir.tmp" "$k8s_dir"
fi

crd_dir="$BEYONDFIT_CACHE/schemas/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
if [ ! -s "$crd_dir/servicemonitor-monitoring-v1.json" ]; then
  log "generating prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRD schemas"
  dir="$(module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
  rm -rf "$crd_dir.tmp"
  "$(python_with_yaml)" "$REPO_ROOT/scripts/gen-kube-schemas.py" crds \
    "$dir"/example/prometheus-operator-crd/*.yaml "$crd_dir.tmp" >&2
  rm -rf "$crd_dir" && mv "$crd_dir.tmp" "$crd_dir"
fi

log "chart tools: helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION, kube-score $KUBE_SCORE_VERSION," \
    "kube-linter $( have kube-linter "$KUBE_LINTER_VERSION" && echo "$KUBE_LINTER_VERSION" || echo "unavailable")," \
    "schemas k8s $K8S_VERSION + prometheus-operator $PROMETHEUS_OPERATOR_VERSION"
