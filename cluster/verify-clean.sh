#!/usr/bin/env bash
# cluster/verify-clean.sh: exits 0 when nothing of the local cluster is left on the host
# (run after cluster/down.sh): no process of its binaries or its containerd, no mount under
# its state dirs, no CNI bridge or node address, no KUBE-* or CNI chain of its network, no
# pod cgroup. Prints each leftover and exits 1 otherwise.
. "$(dirname "$0")/env.sh"
left=0
leftover() { printf 'leftover: %s\n' "$*"; left=$((left + 1)); }

for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = $$ ] && continue
  exe=$(readlink "$p/exe" 2>/dev/null) || continue
  { cmd=$(tr '\0' ' ' <"$p/cmdline"); } 2>/dev/null || continue
  case "$exe" in
    "$BEYONDFIT_CACHE/k8s/"*) leftover "process $pid $cmd" ;;
    /usr/bin/containerd* | /usr/bin/etcd | /usr/sbin/runc)
      case $cmd in *"$CONF"* | *"$RUN_DIR"* | *"$STATE_DIR"*) leftover "process $pid $cmd" ;; esac ;;
  esac
done
while read -r m; do leftover "mount $m"; done < <(
  awk -v a="$STATE_DIR" -v b="$RUN_DIR" \
    'index($5, a) == 1 || index($5, b) == 1 {print $5}' /proc/self/mountinfo)
ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && leftover "interface $CNI_BRIDGE"
ip addr show dev lo | grep -qF " $NODE_IP/32 " && leftover "address $NODE_IP on lo"
# KUBE-* chains and jumps (kube-proxy, kubelet) and the CNI network's rules. Read through a
# process substitution so that each line counts (a pipeline into `grep -q` would be killed by
# SIGPIPE under pipefail and count nothing).
iptables_leftovers() {
  local ipt t
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for t in nat filter mangle; do
      { "$ipt-save" -t "$t" 2>/dev/null || true; } |
        { grep -E "^:KUBE-|^-A .*-j KUBE-|name: \\\\?\"$CNI_NETWORK\\\\?\"" || true; } |
        sed "s/^/$ipt -t $t /"
    done
  done
}
while read -r l; do leftover "$l"; done < <(iptables_leftovers)
# Pod network namespaces the CNI plugins created (containerd names them cni-<uuid>).
for n in /run/netns/cni-* /var/run/netns/cni-*; do [ -e "$n" ] && leftover "netns $n"; done
for d in /sys/fs/cgroup/*/kubepods; do [ -d "$d" ] && leftover "cgroup $d"; done
if [ "$left" -eq 0 ]; then
  log "clean: no cluster process, mount, interface, iptables chain or cgroup left"
  exit 0
fi
exit 1
