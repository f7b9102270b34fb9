import os
from collections.abc import Mapping

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


CPU_WORKER_PROCESSES = 4  # beyond this, each process's model and TensorFlow cost more memory than they add
GPU_WORKER_PROCESSES = 1  # one process keeps its GPU fed; compose reserves one GPU per worker container


def cpu_worker_processes() -> int:
    """Pool processes for an embeddings worker on CPUs: one per core, at most CPU_WORKER_PROCESSES."""
    return max(1, min(CPU_WORKER_PROCESSES, os.cpu_count() or 1))


def embedding_worker_processes(environ: Mapping[str, str] = os.environ) -> int:
    """The one rule for `-c` of an embeddings worker (make worker, the demo, compose, the GPU image):
    EMBEDDING_WORKER_PROCESSES when set; GPU_WORKER_PROCESSES on a GPU worker (WORKER_REQUIRE_GPU=1);
    else cpu_worker_processes()."""
    given = environ.get("EMBEDDING_WORKER_PROCESSES", "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"EMBEDDING_WORKER_PROCESSES must be a whole number of at least 1, not {given!r}")
        return int(given)
    if environ.get("WORKER_REQUIRE_GPU", "").strip().lower() in ("1", "true", "yes", "on"):  # as ml.workers reads it
        return GPU_WORKER_PROCESSES
    return cpu_worker_processes()


@worker_init.connect
def tensorflow_threads_share(sender=None, **kwargs):
    """Give each pool process an equal share of the cores for TensorFlow's thread pools.

    TensorFlow sizes its pools to every core in every process, so `-c N` on N cores ran N x N
    compute threads, slower than one share per process (bench/indexing.py measures both). The pool
    processes inherit this environment (ml.workers imports TensorFlow in each as it starts).
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set by hand win.

    On the 2-core bench machine an embeddings worker with two processes of one TensorFlow thread
    each (`-c 2`) indexed Fashion-MNIST at 0.72 of the model's speed alone, one process with two
    threads at 0.59 (docs/benchmarks.md, "Indexing"): while one process writes its batch to PostgreSQL, the
    other runs the model. So CPU embeddings workers run one process per core, at most
    CPU_WORKER_PROCESSES (`cpu_worker_processes()`, through `embedding_worker_processes()`: make worker, the demo, compose; bench/indexing.py); the
    threads pool was far slower. On a GPU, one process per GPU keeps the device fed (compose), and a
    training worker runs one process with every core (`-c 1`).
    """
    concurrency = getattr(sender, "concurrency", None) or 1
    pool = str(getattr(sender, "pool_cls", "prefork") or "prefork").lower()
    # Only prefork makes one process (one TensorFlow) per slot; threads and solo share one process.
    processes = concurrency if "prefork" in pool or pool == "processes" else 1
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", threads)
