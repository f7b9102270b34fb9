"""Settings (data only), urls, the Celery app, wsgi, the embedded database, middleware, read replicas.
The bottom layer: imports none of catalog, ml or search (urls.py names their url modules as strings)."""

from .celery import app as celery_app
from .tensorflow_logging import quiet

quiet()  # TensorFlow's C++ log lines, decided before anything imports TensorFlow

__all__ = ("celery_app",)
