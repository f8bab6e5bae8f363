//go:build tools

// Package tools pins the prometheus-operator commands that scripts/monitoring-images.sh
// builds: the operator and the config reloader that runs beside each Prometheus.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
