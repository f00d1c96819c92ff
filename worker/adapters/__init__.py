"""I/O adapters, one per server (Kubernetes, MongoDB, S3, Redis, NATS).

Each exposes narrow methods named for our needs and translates library errors into
`worker.core.errors` (temporary → retry, permanent → give up). No decisions are made here:
planning lives in `worker.core`.
"""
