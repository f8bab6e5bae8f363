#!/usr/bin/env bash
# cluster/down.sh [--purge]: stops the local cluster and removes what it made on the host:
# its processes (by pid), the pods' containers and shims, every mount under its state dirs
# (pod volumes, rootfs, shm, network namespaces), the CNI bridge and veths, its iptables
# chains, the node address on lo and the pods' cgroups. Cluster data (etcd, kubelet dir,
# volumes) is wiped so the next start is clean; certificates, binaries and containerd's
# images stay for a fast warm start. --purge removes the state directory as well.
. "$(dirname "$0")/env.sh"
[ "$(id -u)" = 0 ] || die "cluster/down.sh needs root"
purge=false
[ "${1:-}" = --purge ] && purge=true
T0=$SECONDS

# stop [-g SECONDS] NAME...: SIGTERM the components by pid, all at once; SIGKILL those still
# running after the grace period.
stop() {
  local grace=10 name pid i pids=() names=()
  [ "$1" = -g ] && { grace=$2; shift 2; }
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    fi
    rm -f "$PIDS/$name.pid"
  done
  for ((i = 0; i < grace * 10; i++)); do
    local running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ $running = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      log "${names[$i]} did not stop, killing it"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  [ ${#names[@]} -eq 0 ] || log "$(printf '[%4ss] stopped %s' "$((SECONDS - T0))" "${names[*]}")"
}

# 1. No new pods: the kubelet goes first. Then containerd tears every pod sandbox down
#    (kills containers, runs CNI DEL: veth, IP, iptables rules) while it still runs.
stop -g 15 kubelet
if pid_of containerd >/dev/null && [ -x "$K8S_BIN/cri-teardown" ]; then
  "$K8S_BIN/cri-teardown" -endpoint "$CRI_ENDPOINT" -timeout 60s >/dev/null ||
    log "warning: some pod sandboxes did not stop cleanly; cleaning up by hand"
  log "$(printf '[%4ss] pod sandboxes removed' "$((SECONDS - T0))")"
fi
# 2. Everything else: the clients of the API server, then the API server, then its store
#    and the runtime.
stop kube-proxy coredns metrics-server local-path-provisioner kube-scheduler \
  kube-controller-manager
stop kube-apiserver
stop etcd containerd
for c in "${COMPONENTS[@]}"; do stop "$c"; done # anything a future list adds

# 3. Leftover shims and container processes of *our* containerd, found by its socket or
#    state path in their command line (a shim outlives containerd by design).
for f in $(grep -lsaF -e "$CONTAINERD_SOCK" -e "$RUN_DIR/containerd" /proc/[0-9]*/cmdline || true); do
  pid=${f#/proc/}; pid=${pid%/cmdline}
  [ "$pid" = $$ ] || kill -KILL "$pid" 2>/dev/null || true
done
# Processes still inside the pods' cgroups (containers whose shim was killed).
for f in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
  /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs; do
  [ -f "$f" ] || continue
  while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$f"
done

# 4. Mounts under our state dirs, deepest first (pod volumes, rootfs, shm, netns).
umount_under() {
  local root=$1 m
  for _ in 1 2 3; do
    mapfile -t mounts < <(awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' \
      /proc/self/mountinfo | sort -r)
    [ ${#mounts[@]} -eq 0 ] && return 0
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
}
umount_under "$STATE_DIR"
umount_under "$RUN_DIR"

# 5. Network: the CNI bridge (and any veth still on it), the node address, iptables.
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
fi
ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true

# iptables_sweep CMD: deletes the rules that jump to, or carry the comment of, what we made
# (KUBE-* chains of kubelet and kube-proxy; CNI chains and rules of network $CNI_NETWORK),
# then flushes and deletes those chains. Other tools' rules (podman's CNI) are untouched.
iptables_sweep() {
  local ipt=$1 save=$1-save table line chain dump chains ours
  command -v "$save" >/dev/null || return 0
  ours="name: \\\\?\"$CNI_NETWORK\\\\?\""
  for table in nat filter mangle; do
    dump=$("$save" -t "$table" 2>/dev/null) || continue
    # Our chains: KUBE-*, and the CNI-* chains that a rule naming our network jumps to.
    chains=$({
      grep -oE '^:KUBE-[A-Za-z0-9-]+' <<<"$dump" | tr -d : || true
      grep -E "^-A .*$ours" <<<"$dump" | grep -oE -- '-j CNI-[A-Za-z0-9-]+' | cut -c4- || true
    } | sort -u)
    # Rules in other chains that jump into ours or carry our network's comment.
    while read -r line; do
      [ -n "$line" ] || continue
      eval "$ipt -t $table ${line/#-A/-D}" 2>/dev/null || true
    done < <(grep -E '^-A ' <<<"$dump" | grep -vE '^-A KUBE-' |
      grep -E -- "-j KUBE-|$ours" || true)
    for chain in $chains; do "$ipt" -t "$table" -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
    # portmap's shared chains, once no rule is left in them.
    dump=$("$save" -t "$table" 2>/dev/null) || continue
    for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
      grep -q "^:$chain " <<<"$dump" || continue
      grep -q "^-A $chain " <<<"$dump" && continue
      while read -r line; do
        [ -n "$line" ] || continue
        eval "$ipt -t $table ${line/#-A/-D}" 2>/dev/null || true
      done < <(grep -E "^-A .*-j $chain( |\$)" <<<"$dump" || true)
      "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}
iptables_sweep iptables
iptables_sweep ip6tables

# 6. The pods' cgroups (empty now), deepest first.
for d in /sys/fs/cgroup/*/kubepods; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

# The kubelet's /var/log/containers symlinks into our pod logs.
for l in /var/log/containers/*.log; do
  [ -L "$l" ] && case $(readlink "$l") in "$STATE_DIR"/*) rm -f "$l" ;; esac
done

# 7. Cluster data: the next start is a fresh cluster. Certificates and images stay.
rm -rf "$STATE_DIR/etcd" "$STATE_DIR/kubelet" "$STATE_DIR/cni" "$STATE_DIR/local-path" \
  "$STATE_DIR/pod-logs" "$RUN_DIR"
if $purge; then
  rm -rf "$STATE_DIR"
  log "purged $STATE_DIR"
fi
log "cluster down in $((SECONDS - T0)) s"
