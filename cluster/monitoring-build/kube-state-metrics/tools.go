//go:build tools

// Package tools pins the kube-state-metrics that scripts/monitoring-images.sh builds.
package tools

import (
	_ "k8s.io/kube-state-metrics/v2"
)
