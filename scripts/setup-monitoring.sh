#!/usr/bin/env bash
# scripts/setup-monitoring.sh: installs what the monitoring layer needs — Debian's
# Prometheus (2.42) and promtool — without leaving a Prometheus daemon running.
#
# The Debian package ships a systemd unit and a SysV init script; its postinst may try to
# start the daemon. We install with policy-rc.d answering 101 ("action forbidden") so no
# init script starts anything, then make sure nothing of the package's own daemon is left
# listening (the tests and `make demo` start Prometheus as a plain process on ports they pick).
. "$(dirname "$0")/lib.sh"

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  log "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') already installed"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ "$had_policy" = 0 ]; then
  printf '#!/bin/sh\n# written by beyondfit scripts/setup-monitoring.sh for the apt install\nexit 101\n' >"$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi

apt_install prometheus

# Belt and braces: if the package started its daemon anyway, stop exactly that process.
pidfile=/run/prometheus/prometheus.pid
for pid in $(pgrep -x prometheus -u prometheus 2>/dev/null || true); do
  log "stopping the package's own prometheus daemon (pid $pid)"
  kill "$pid" 2>/dev/null || true
done
[ -f "$pidfile" ] && rm -f "$pidfile"

command -v promtool >/dev/null || die "promtool missing after installing prometheus"
log "installed $(prometheus --version 2>&1 | head -1)"
