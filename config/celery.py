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
    processes inherit this environment (ml.workers imports TensorFlow in each as it starts).
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by hand win.

    On a CPU machine run one process per core (`-c` = cores, Celery's default): each runs the model
    on its one core while its two decode threads (Embedder.embed_files) read and decode the next
    files, mostly waiting on I/O or holding the GIL, and the two processes' batches interleave, so
    one process's database write overlaps the other's model call instead of leaving a core idle.
    One process with every core for TensorFlow would leave cores idle during each write (the
    reasoning; `bench/indexing.py --concurrency 1` measures it). On a GPU one process per GPU
    (`-c 1`, compose) keeps the device fed.
    """
    concurrency = getattr(sender, "concurrency", None) or 1
    pool = str(getattr(sender, "pool_cls", "prefork") or "prefork").lower()
    # Only prefork makes one process (one TensorFlow) per slot; threads and solo share one process.
    processes = concurrency if "prefork" in pool or pool == "processes" else 1
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
