"""The Celery app Flower loads (`celery -A worker.flower_app flower`): the broker-only app, and a
refusal to start without a real login.

Flower reads FLOWER_BASIC_AUTH (`user:password`, comma-separated for several) itself and, given
none, serves the dashboard — task names, arguments, worker control — to anyone. So no default
password exists anywhere, and Flower does not start until the operator sets one.
"""

from worker.lazy_kube import install as import_kubernetes_lazily

import_kubernetes_lazily()  # before anything imports kubernetes: worker/lazy_kube.py

import os

from worker.app import create_app
from worker.settings import SettingsError, flower_login_problem, load_settings

_problem = flower_login_problem(os.environ.get("FLOWER_BASIC_AUTH", ""))
if _problem is not None:
    raise SettingsError(f"Flower refuses to start: {_problem}")

app = create_app(load_settings(role="broker"))
