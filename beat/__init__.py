"""Celery beat schedule for the0-k8s."""
