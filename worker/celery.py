"""The Celery app (`celery -A worker worker|beat|flower` finds `app` here).

Settings are loaded once, at import, from the environment; a bad configuration stops the
process with one message listing every problem.
"""

from worker.app import create_app
from worker.settings import load_settings

app = create_app(load_settings())
