"""Settings (data only), urls, the Celery app, wsgi, the embedded database, middleware, read replicas.
The bottom layer: imports none of catalog, ml or search (urls.py names their url modules as strings)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
