"""the0-k8s HTTP API: liveness, readiness, metrics and status."""
