"""Settings, the Celery app, the database and request plumbing; imports no other package of the project."""

from .celery import app as celery_app
from .tensorflow_logging import quiet

quiet()  # TensorFlow's C++ log lines, decided before anything imports TensorFlow

__all__ = ("celery_app",)
