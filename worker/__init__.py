"""the0-k8s worker: the Celery app, pure core, adapters and tasks."""
