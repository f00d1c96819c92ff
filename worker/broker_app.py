"""The Celery app for the processes that talk only to the broker: beat
(`celery -A worker.broker_app beat`) and Flower (`celery -A worker.broker_app flower`).

Same app as `worker.celery` (tasks, queues, schedule), loaded under the "broker" role: it needs
REDIS_URL and no Mongo or storage credentials, so those Deployments are given none
(ROLE_REQUIRES in worker/settings.py).
"""

from worker.lazy_kube import install as import_kubernetes_lazily

import_kubernetes_lazily()  # before anything imports kubernetes: worker/lazy_kube.py

from worker.app import create_app
from worker.settings import load_settings

app = create_app(load_settings(role="broker"))
