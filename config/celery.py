import os

from celery import Celery
from celery.signals import worker_init

from .database import database_ensure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("lookalike")


@app.on_configure.connect
def database_start(sender=None, **kwargs):
    """Before the app first reads Django's settings (a worker starting, or the first task sent):
    importing `config` (which every task module does) starts nothing."""
    database_ensure()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def tensorflow_threads_share(sender=None, **kwargs):
    """Give each pool process an equal share of the cores for TensorFlow's thread pools.

    TensorFlow sizes its pools to every core in every process, so `-c N` on N cores ran N x N
    compute threads, slower than one share per process (bench/indexing.py measures both). The pool
    processes inherit this environment and import TensorFlow only on their first task.
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by hand win.
    """
    concurrency = getattr(sender, "concurrency", None) or 1
    threads = str(max(1, (os.cpu_count() or 1) // concurrency))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
