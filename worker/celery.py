"""The Celery app (`celery -A worker worker|beat|flower` finds `app` here).

Settings are loaded once, at import, from the environment; a bad configuration stops the
process with one message listing every problem.
"""

from worker.lazy_kube import install as import_kubernetes_lazily

import_kubernetes_lazily()  # before anything imports kubernetes: worker/lazy_kube.py

from worker.app import create_app
from worker.malloc import limit_arenas
from worker.settings import load_settings

limit_arenas()  # before the pool's threads: worker/malloc.py
app = create_app(load_settings())
