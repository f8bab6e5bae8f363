#!/usr/bin/env bash
# cluster/up.sh: starts a real single-node Kubernetes cluster on this machine, in the spirit
# of upstream's hack/local-up-cluster.sh, and waits until it works:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#   (iptables), containerd + runc + CNI bridge, CoreDNS, metrics-server and
#   local-path-provisioner (the default StorageClass), all as host processes.
# Idempotent: when the cluster is already up it only checks it and returns.
# Kubeconfig: /var/lib/beyondfit-cluster/kubeconfig (printed at the end).
. "$(dirname "$0")/env.sh"
[ "$(id -u)" = 0 ] || die "cluster/up.sh needs root (kubelet, containerd, iptables)"

T0=$SECONDS
lap() { log "$(printf '[%4ss] %s' "$((SECONDS - T0))" "$*")"; }

# --- already up? -----------------------------------------------------------------------
all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
}
node_ready() {
  [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
if all_running && kc get --raw /readyz >/dev/null 2>&1 && node_ready; then
  lap "cluster already up; kubeconfig: $KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
  exit 0
fi
# Not (fully) up: clear whatever a previous run left (a partial cluster, or mounts, bridge
# and iptables rules of one whose processes were killed), so every start is a clean one.
bash "$CLUSTER_DIR/down.sh" >"$RUN_DIR.down.log" 2>&1 || { cat "$RUN_DIR.down.log" >&2; die "cleanup failed"; }
rm -f "$RUN_DIR.down.log"
lap "clean slate"

# --- what it runs on --------------------------------------------------------------------
apt_install containerd runc containernetworking-plugins iptables etcd-server etcd-client \
  conntrack podman buildah busybox-static openssl gettext-base iproute2 ca-certificates
lap "apt packages present"
bash "$CLUSTER_DIR/build.sh" all
lap "binaries present ($K8S_BIN)"

mkdir -p "$STATE_DIR" "$RUN_DIR" "$PKI" "$CONF/cni" "$LOGS" "$PIDS" "$STATE_DIR/local-path" \
  "$STATE_DIR/kubelet" "$STATE_DIR/etcd"
chmod 0700 "$PKI"

# --- kernel and host network ---------------------------------------------------------------
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
  log "warning: net.bridge.bridge-nf-call-iptables not settable (br_netfilter missing?)"
ip addr show dev lo | grep -qF " $NODE_IP/32 " || ip addr add "$NODE_IP/32" dev lo

# --- certificates (kept across restarts; `down.sh --purge` removes them) ---------------------
# gen_cert NAME CN [O] [SAN]: an EC key and a certificate signed by the cluster CA
# (client and server usage), unless it exists.
gen_cert() {
  local name=$1 cn=$2 o=${3:-} san=${4:-} ca=${5:-ca} subj="/CN=$2"
  [ -s "$PKI/$name.crt" ] && return 0
  [ -n "$o" ] && subj="/O=$o/CN=$cn"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
gen_ca() {
  [ -s "$PKI/$1.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/$1.crt" 2>/dev/null
}
gen_ca ca beyondfit-cluster-ca
gen_ca front-proxy-ca beyondfit-front-proxy-ca
API_SANS="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
API_SANS+=",DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost"
API_SANS+=",IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP"
gen_cert apiserver kube-apiserver "" "$API_SANS"
gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
gen_cert front-proxy-client front-proxy-client "" "" front-proxy-ca
gen_cert admin admin system:masters
gen_cert controller-manager system:kube-controller-manager
gen_cert scheduler system:kube-scheduler
gen_cert kube-proxy system:kube-proxy
gen_cert kubelet-client "system:node:$NODE_NAME" system:nodes
gen_cert kubelet "$NODE_NAME" "" "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
gen_cert coredns system:beyondfit:coredns
gen_cert metrics-server system:beyondfit:metrics-server "" "DNS:metrics-server.kube-system.svc,IP:$NODE_IP"
gen_cert local-path-provisioner system:beyondfit:local-path-provisioner
[ -s "$PKI/sa.key" ] || {
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE CERTNAME: a kubeconfig with the client certificate embedded.
write_kubeconfig() {
  local b64="base64 -w0"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: beyondfit
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority-data: $($b64 <"$PKI/ca.crt")
users:
  - name: $2
    user:
      client-certificate-data: $($b64 <"$PKI/$2.crt")
      client-key-data: $($b64 <"$PKI/$2.key")
contexts:
  - name: beyondfit
    context: {cluster: beyondfit, user: $2}
current-context: beyondfit
EOF
  chmod 0600 "$1"
}
write_kubeconfig "$KUBECONFIG_PATH" admin
for c in controller-manager scheduler kube-proxy kubelet-client coredns metrics-server \
  local-path-provisioner; do
  write_kubeconfig "$CONF/$c.kubeconfig" "$c"
done
lap "certificates and kubeconfigs in $PKI"

# --- configuration files from cluster/templates ---------------------------------------------
CA_BUNDLE=$(base64 -w0 <"$PKI/ca.crt")
export STATE_DIR RUN_DIR CONF PKI NODE_IP NODE_NAME POD_CIDR DNS_SVC_IP CLUSTER_DOMAIN \
  CNI_NETWORK CNI_BRIDGE CNI_BIN_DIR CONTAINERD_SOCK CRI_ENDPOINT PAUSE_IMAGE BUSYBOX_IMAGE \
  METRICS_SERVER_PORT CA_BUNDLE
VARS='${STATE_DIR} ${RUN_DIR} ${CONF} ${PKI} ${NODE_IP} ${NODE_NAME} ${POD_CIDR} ${DNS_SVC_IP}
${CLUSTER_DOMAIN} ${CNI_NETWORK} ${CNI_BRIDGE} ${CNI_BIN_DIR} ${CONTAINERD_SOCK} ${CRI_ENDPOINT}
${PAUSE_IMAGE} ${BUSYBOX_IMAGE} ${METRICS_SERVER_PORT} ${CA_BUNDLE}'
render() { envsubst "$VARS" <"$CLUSTER_DIR/templates/$1" >"$2"; }
render containerd.toml "$CONF/containerd.toml"
render cni.conflist "$CONF/cni/10-$CNI_NETWORK.conflist"
render kubelet.yaml "$CONF/kubelet.yaml"
render kube-proxy.yaml "$CONF/kube-proxy.yaml"
render Corefile "$CONF/Corefile"
render addons.yaml "$CONF/addons.yaml"

# --- process helpers --------------------------------------------------------------------------
# start NAME CMD...: runs CMD in its own session, logs to $LOGS/NAME.log, pid in $PIDS.
# The daemons must not inherit scripts/test.sh's host lock (fd 9): they outlive the run, and
# a cluster left up would hold the lock for good, so every later run would wait forever.
start() {
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDS/$name.pid"
}
# wait_for WHAT TIMEOUT CMD...: polls CMD until it succeeds; fails naming the log to read.
wait_for() {
  local what=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$what did not come up in ${timeout}s (logs: $LOGS)"
}
alive() { pid_of "$1" >/dev/null || die "$1 exited; see $LOGS/$1.log: $(tail -n 5 "$LOGS/$1.log")"; }

# --- containerd (its images survive down.sh, so a warm start imports nothing) ----------------
start containerd containerd --config "$CONF/containerd.toml"
# --- etcd (fresh data each start: down.sh wipes it) -----------------------------------------
start etcd etcd --name beyondfit --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "beyondfit=http://127.0.0.1:$ETCD_PEER_PORT" \
  --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
lap "etcd up"

# --- kube-apiserver ---------------------------------------------------------------------------
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction,PodSecurity \
  --allow-privileged=true \
  --client-ca-file="$PKI/ca.crt" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
  --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --profiling=false --v=1
wait_for kube-apiserver 90 kc get --raw /readyz
lap "kube-apiserver ready on https://$NODE_IP:$API_PORT"

# --- control-plane controllers -------------------------------------------------------------
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --use-service-account-credentials=true \
  --controllers='*,bootstrapsigner,tokencleaner' \
  --profiling=false --v=1
start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$CONF/scheduler.kubeconfig" \
  --authentication-kubeconfig="$CONF/scheduler.kubeconfig" \
  --authorization-kubeconfig="$CONF/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
kc apply -f "$CONF/addons.yaml" >"$LOGS/addons-apply.log" 2>&1 ||
  die "applying the add-on objects failed: $(tail -n 5 "$LOGS/addons-apply.log")"
lap "controller-manager, scheduler started; add-on objects applied"

# --- node: containerd, images, kubelet, kube-proxy -------------------------------------------
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
bash "$CLUSTER_DIR/images.sh"
lap "containerd up with $PAUSE_IMAGE and $BUSYBOX_IMAGE"
start kubelet "$K8S_BIN/kubelet" \
  --config="$CONF/kubelet.yaml" --kubeconfig="$CONF/kubelet-client.kubeconfig" \
  --root-dir="$STATE_DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --pod-infra-container-image="$PAUSE_IMAGE" --v=1
start kube-proxy "$K8S_BIN/kube-proxy" --config="$CONF/kube-proxy.yaml" --v=1

# --- add-ons as host processes -------------------------------------------------------------
start coredns "$COREDNS_BIN" -conf "$CONF/Corefile"
start metrics-server "$METRICS_SERVER_BIN" \
  --kubeconfig="$CONF/metrics-server.kubeconfig" \
  --authentication-kubeconfig="$CONF/metrics-server.kubeconfig" \
  --authorization-kubeconfig="$CONF/metrics-server.kubeconfig" \
  --bind-address="$NODE_IP" --secure-port="$METRICS_SERVER_PORT" \
  --tls-cert-file="$PKI/metrics-server.crt" --tls-private-key-file="$PKI/metrics-server.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=InternalIP --kubelet-use-node-status-port \
  --metric-resolution=15s
start local-path-provisioner "$LOCAL_PATH_BIN" start \
  --kubeconfig "$CONF/local-path-provisioner.kubeconfig" \
  --namespace local-path-storage --configmap-name local-path-config \
  --service-account-name local-path-provisioner-service-account \
  --helper-image "$BUSYBOX_IMAGE" --provisioner-name rancher.io/local-path

# --- wait until it works ---------------------------------------------------------------------
wait_for "node $NODE_NAME Ready" 120 node_ready
lap "node $NODE_NAME Ready"
wait_for CoreDNS 60 busybox nslookup "kubernetes.default.svc.$CLUSTER_DOMAIN" "$NODE_IP"
lap "CoreDNS answers"
wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
metrics_available() {
  [ "$(kc get apiservice v1beta1.metrics.k8s.io \
    -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}')" = True ]
}
wait_for metrics-server 90 metrics_available
lap "metrics-server serves metrics.k8s.io"
for c in "${COMPONENTS[@]}"; do alive "$c"; done
# The default ServiceAccount must exist before the first pod can be created in a namespace.
wait_for "default ServiceAccount" 30 kc -n default get serviceaccount default

lap "cluster up in $((SECONDS - T0)) s"
cat >&2 <<EOF
  kubeconfig: $KUBECONFIG_PATH      (export KUBECONFIG=$KUBECONFIG_PATH)
  helm + this cluster's kubectl on PATH, KUBECONFIG set:  . cluster/kube-env.sh
  API server: https://$NODE_IP:$API_PORT    node: $NODE_NAME ($NODE_IP)
  load an image: cluster/load-image.sh IMAGE...    logs: $LOGS    stop: make cluster-down
EOF
echo "$KUBECONFIG_PATH"
