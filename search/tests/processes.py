"""Real processes for the fault tests: Celery workers as child processes on the test database, a
private redis-server on a spare 127.0.0.1 port (the shared one on 6379 is never touched), and
bounded waits. Every child is killed in cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from catalog.models import ProductImage
from config.celery import app
from ml.models import ModelVersion
from search.models import ImageEmbedding, IndexJob

from .factories import COLORS, SHAPES, category_create, product_create, shape_png

ROOT = Path(settings.BASE_DIR)


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database the tests run on (already the test database's name here)."""
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    host = db["HOST"] or ""
    query = ""
    if not host or host.startswith("/"):
        query = "?host=" + quote(host or db.get("OPTIONS", {}).get("host", ""), safe="")
        host = ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{db['NAME']}{query}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": app.conf.broker_url,
        "CACHE_URL": "locmem://",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODELS_ROOT": str(settings.MODELS_ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class RedisServer:
    """A private redis-server with an append-only file, so a restart keeps the queues."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="lookalike-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(up, timeout=15, what=f"redis-server on port {self.port}", interval=0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes the append-only file and exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """A Celery worker child process on the embeddings queue (solo pool: one process to kill)."""

    def __init__(self, *, loglevel: str = "WARNING", **env: str):
        self.log = tempfile.NamedTemporaryFile(prefix="lookalike-worker-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "embeddings",
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"faults-{uuid.uuid4().hex[:8]}@%h",
                f"--loglevel={loglevel}",
            ],
            cwd=ROOT,
            env=child_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill()
        self.log.close()
        os.unlink(self.log.name)


class PrivateBrokerMixin:
    """Point this process's Celery app (the producer side) at a private redis-server."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = RedisServer()
        cls.redis.start()
        cls._old_broker = app.conf.broker_url
        # Celery reads CELERY_BROKER_URL from the environment before its own setting: both must change.
        cls._old_env = os.environ.get("CELERY_BROKER_URL")
        os.environ["CELERY_BROKER_URL"] = cls.redis.url
        app.conf.broker_url = cls.redis.url
        app._after_fork()  # drop pooled connections to the old broker (what Celery does after a fork)

    @classmethod
    def tearDownClass(cls):
        if cls._old_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = cls._old_env
        app.conf.broker_url = cls._old_broker
        app._after_fork()
        cls.redis.cleanup()
        super().tearDownClass()

    def worker(self, **kwargs) -> Worker:
        worker = Worker(**kwargs)
        self.addCleanup(worker.cleanup)
        return worker

    def catalogue(self, n: int) -> list[ProductImage]:
        category = category_create("Shapes")
        for i in range(n):
            product_create(category=category, images=[shape_png(SHAPES[i % 4], color=COLORS[(i // 4) % 4])])
        return list(ProductImage.objects.order_by("id"))

    def wait_job(self, job: IndexJob, timeout: float, worker: Worker) -> IndexJob:
        def finished():
            job.refresh_from_db()
            return job.is_finished

        try:
            wait_for(finished, timeout=timeout, what=f"job {job.pk} to finish")
        except AssertionError:
            raise AssertionError(
                f"{job.status} {job.processed}/{job.total}; worker log:\n{worker.output()[-3000:]}"
            ) from None
        return job

    def assertEmbeddedOnce(self, job: IndexJob, version: ModelVersion, images: list[ProductImage]):
        self.assertEqual(job.status, IndexJob.Status.DONE, job.error)
        self.assertEqual((job.done, job.failed, job.total), (len(images), 0, len(images)))
        rows = list(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", flat=True))
        self.assertEqual(sorted(rows), sorted(i.pk for i in images))
        batches = list(job.batches.all())
        self.assertTrue(all(b.finished_at for b in batches))
        self.assertEqual(sum(b.embedded for b in batches), len(images))  # each batch counted once
