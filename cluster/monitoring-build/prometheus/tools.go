//go:build tools

// Package tools pins the Prometheus server that scripts/monitoring-images.sh builds.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
