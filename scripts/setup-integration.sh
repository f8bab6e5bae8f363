#!/usr/bin/env bash
# The integration layer checks /metrics with promtool: the monitoring setup installs it.
exec "$(dirname "$0")/setup-monitoring.sh"
