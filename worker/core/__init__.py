"""The functional core of the0-k8s: pure functions of plain data.

Parsing bot documents, naming Kubernetes objects, generating pod specs, classifying pod status
and planning reconcile actions all live here, so they can be tested with plain values.

Nothing in this package does I/O, reads the clock or the environment, or imports a client
library (kubernetes, pymongo, redis, celery, minio): time arrives as a `now` parameter and data
arrives as plain mappings. The imperative shell (`worker.adapters`, `worker.tasks`) does the rest.
"""
