"""The Celery app of the log worker (`celery -A worker.log_app worker -Q logs`).

Log collection runs in processes of its own (k8s/log-worker.yaml, the only consumer of the `logs`
queue), so a log flood can slow log collection but never take the reconcile down. Same app as
`worker.celery` (tasks, queues, schedule), loaded under the "logs" role: it needs the storage
credentials and no Mongo URI, so its Deployment is given none (ROLE_REQUIRES in
worker/settings.py).
"""

from worker.lazy_kube import install as import_kubernetes_lazily

import_kubernetes_lazily()  # before anything imports kubernetes: worker/lazy_kube.py

from worker.app import create_app
from worker.malloc import limit_arenas
from worker.settings import load_settings

limit_arenas()  # before the pool's threads: worker/malloc.py
app = create_app(load_settings(role="logs"))
