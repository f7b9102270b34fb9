"""Faults with real processes: Celery workers killed with SIGKILL, a Redis server restarted, database
connections terminated, a training run killed mid-epoch, model files gone bad, and concurrent
searches and activations.

Workers are `python -m celery -A config worker` child processes on the test database and on a
private redis-server on a spare 127.0.0.1 port (the shared one on 6379 is never touched). Every wait
is bounded; every child is killed in cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import (
    Client,
    LiveServerTestCase,
    TestCase,
    TransactionTestCase,
    override_settings,
)
from django.urls import reverse

from catalog.models import ProductImage
from config.celery import app
from ml.models import ModelVersion
from ml.runtime import forget
from search import tasks
from search.indexing.batches import index_batch_run
from search.indexing.jobs import index_job_finish, index_job_start
from search.models import ImageEmbedding, IndexBatch, IndexJob, ServingState
from search.queries.similar import SimilarItems, product_similar
from search.serving.activation import ActivationRefused, model_version_activate
from search.serving.versions import model_version_is_active

from .factories import (
    COLORS,
    SHAPES,
    category_create,
    image_bytes,
    index_and_activate,
    model_version_create,
    product_create,
    product_with_vectors,
    shape_image,
    shape_png,
)
from .tiny_model import tiny_model_version

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


def test_database_url() -> str:
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
        "DATABASE_URL": test_database_url(),
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
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "embeddings", "-P", "solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"faults-{uuid.uuid4().hex[:8]}@%h",
             f"--loglevel={loglevel}"],
            cwd=ROOT, env=child_env(**env), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
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
            raise AssertionError(f"{job.status} {job.processed}/{job.total}; worker log:\n{worker.output()[-3000:]}") from None
        return job

    def assertEmbeddedOnce(self, job: IndexJob, version: ModelVersion, images: list[ProductImage]):
        self.assertEqual(job.status, IndexJob.Status.DONE, job.error)
        self.assertEqual((job.done, job.failed, job.total), (len(images), 0, len(images)))
        rows = list(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", flat=True))
        self.assertEqual(sorted(rows), sorted(i.pk for i in images))
        batches = list(job.batches.all())
        self.assertTrue(all(b.finished_at for b in batches))
        self.assertEqual(sum(b.embedded for b in batches), len(images))  # each batch counted once


@override_settings(EMBEDDING_BATCH_SIZE=3)
class WorkerCrashTests(PrivateBrokerMixin, TransactionTestCase):
    def test_worker_killed_mid_batch_the_job_completes_on_a_new_worker_embedding_each_image_once(self):
        version = tiny_model_version()
        images = self.catalogue(9)
        first = self.worker(CELERY_VISIBILITY_TIMEOUT="3")
        job = index_job_start(model_version=version)  # autocommit: published at once
        started = wait_for(
            lambda: IndexBatch.objects.filter(job=job, attempts__gte=1, finished_at__isnull=True).first(),
            timeout=60, what="the first worker to start a batch",
        )
        first.kill()  # mid-batch: the worker is still loading the model or embedding
        started.refresh_from_db()
        self.assertIsNone(started.finished_at)
        time.sleep(3.5)  # past the visibility timeout: the lost message may be redelivered
        second = self.worker(CELERY_VISIBILITY_TIMEOUT="3")
        job = self.wait_job(job, 120, second)
        self.assertEmbeddedOnce(job, version, images)
        started.refresh_from_db()
        self.assertGreaterEqual(started.attempts, 2)  # the lost batch ran again on the new worker

    def test_a_batch_that_keeps_losing_its_worker_is_given_up_not_looped(self):
        version = tiny_model_version()
        images = self.catalogue(4)
        with self.settings(EMBEDDING_BATCH_SIZE=3):
            job = index_job_start(model_version=version)  # no worker runs: the batches wait
        poison, healthy = job.batches.order_by("number")
        # As if three workers had died on it (the cap is 12 by default; 3 here).
        IndexBatch.objects.filter(pk=poison.pk).update(attempts=3)
        with override_settings(INDEX_BATCH_MAX_ATTEMPTS=3):
            self.assertTrue(index_batch_run(batch_id=poison.pk))
            self.assertTrue(index_batch_run(batch_id=healthy.pk))
        index_job_finish(job_id=job.pk)
        job.refresh_from_db()
        self.assertEqual((job.status, job.done, job.failed), (IndexJob.Status.DONE, 1, 3))
        reasons = set(version.embedding_failures.values_list("reason", flat=True))
        self.assertEqual(len(reasons), 1)
        self.assertIn("started 3 times and never finished", reasons.pop())
        self.assertEqual(ImageEmbedding.objects.get().image_id, images[3].pk)


@override_settings(EMBEDDING_BATCH_SIZE=2)
class BrokerAndDatabaseFaultTests(PrivateBrokerMixin, TransactionTestCase):
    def test_redis_restarting_mid_job_the_job_still_completes(self):
        version = tiny_model_version()
        images = self.catalogue(10)
        worker = self.worker(CELERY_VISIBILITY_TIMEOUT="5")
        job = index_job_start(model_version=version)
        # While the worker holds the first batch (loading the model takes seconds), four wait in Redis.
        wait_for(lambda: IndexBatch.objects.filter(job=job, attempts__gte=1).exists(), timeout=60,
                 what="the worker to start a batch")
        self.redis.stop()
        self.assertEqual(IndexBatch.objects.filter(job=job, attempts=0).count(), 4)
        time.sleep(1.5)
        self.redis.start()  # same port, same append-only file: the queued batches are still there
        job = self.wait_job(job, 120, worker)
        self.assertEmbeddedOnce(job, version, images)

    def test_database_connection_dropped_mid_batch_the_task_retries_and_succeeds(self):
        version = tiny_model_version()
        images = self.catalogue(6)
        worker = self.worker(loglevel="INFO")
        job = index_job_start(model_version=version)
        # The first batch takes seconds (the worker imports TensorFlow and loads the model) between
        # reading its images and writing their vectors: terminate the worker's connection then.
        wait_for(lambda: IndexBatch.objects.filter(job=job, attempts__gte=1).exists(), timeout=60,
                 what="the worker to start a batch")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            self.assertGreaterEqual(cursor.fetchone()[0], 1)
        job = self.wait_job(job, 120, worker)
        self.assertEmbeddedOnce(job, version, images)
        self.assertIn("retry", worker.output().lower())
        self.assertGreaterEqual(job.batches.get(number=0).attempts, 2)


class TrainingResumeTests(TransactionTestCase):
    CHILD = """
import os, time, django
django.setup()
import keras
from ml.models import ModelVersion
from ml.services import model_version_train

class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        with open(os.environ["PROGRESS"], "a") as f:
            f.write(f"{self.epoch} {batch}\\n")
        time.sleep(0.3)
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

model_version_train(model_version=ModelVersion.objects.get(pk=int(os.environ["VERSION"])), extra_callbacks=(Slow(),))
"""

    def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint(self):
        import keras

        from ml.artifacts import STATE
        from ml.services import model_version_create, model_version_train

        for shape, color in zip(SHAPES[:3], COLORS, strict=False):
            category = category_create(shape.title())
            for i in range(6):
                product_create(category=category, images=[shape_png(shape, color=color, size=16 + i)])
        version = model_version_create(
            architecture="classifier", variant="mlp",
            overrides={"epochs": 4, "image_size": 16, "dim": 8, "batch_size": 4, "augment": False},
        )
        shutil.rmtree(version.workdir, ignore_errors=True)
        self.addCleanup(shutil.rmtree, version.workdir, ignore_errors=True)
        progress = Path(tempfile.mkdtemp()) / "progress"
        self.addCleanup(shutil.rmtree, progress.parent)
        child = subprocess.Popen(
            [sys.executable, "-c", self.CHILD], cwd=ROOT, env=child_env(VERSION=str(version.pk), PROGRESS=str(progress)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.addCleanup(lambda: child.poll() is None and os.killpg(child.pid, signal.SIGKILL))

        def in_second_epoch():
            if child.poll() is not None:
                raise AssertionError(child.stdout.read().decode(errors="replace")[-3000:])
            lines = progress.read_text().split() if progress.exists() else []
            return (version.workdir / STATE).exists() and any(line == "1" for line in lines[0::2])

        wait_for(in_second_epoch, timeout=120, what="the run to checkpoint epoch 1 and start epoch 2")
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        state = json.loads((version.workdir / STATE).read_text())
        self.assertGreaterEqual(state["epoch"], 1)
        self.assertLess(state["epoch"], 4)
        version.refresh_from_db()
        self.assertEqual(version.status, ModelVersion.Status.RUNNING)  # the record still says running

        class FirstEpoch(keras.callbacks.Callback):
            first = None

            def on_epoch_begin(self, epoch, logs=None):
                FirstEpoch.first = epoch if FirstEpoch.first is None else FirstEpoch.first

        version = model_version_train(model_version=version, extra_callbacks=(FirstEpoch(),))
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertEqual(FirstEpoch.first, state["epoch"])  # resumed, not restarted from epoch 0
        self.assertEqual([row["epoch"] for row in version.loss_history], [1, 2, 3, 4])
        self.assertTrue((version.workdir / "embedder.keras").exists())


class ModelFileFaultTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.active = tiny_model_version()
        cls.products = [product_create(images=[shape_png(s, color=c)]) for s in SHAPES for c in COLORS[:2]]
        index_and_activate(cls.active)

    def setUp(self):
        self.addCleanup(forget)

    def search_works(self):
        api = self.client.post(reverse("search:api_search"), {"image": _upload(shape_png("circle"))})
        self.assertEqual(api.status_code, 200, api.content)
        self.assertEqual(api.json()["model_version"], self.active.pk)
        self.assertEqual(product_similar(product=self.products[0], k=3).state, SimilarItems.READY)

    def broken_version(self, how: str) -> ModelVersion:
        version = tiny_model_version()
        model = version.workdir / "embedder.keras"
        if how == "missing":
            model.unlink()
        elif how == "corrupt":
            model.write_bytes(b"PK\x03\x04 this is not a keras archive")
        else:
            (version.workdir / "meta.json").write_text("{not json")
        return version

    def test_reindexing_with_a_missing_or_corrupt_model_fails_clearly_and_the_active_one_keeps_serving(self):
        for how in ("missing", "corrupt", "bad meta"):
            with self.subTest(how):
                forget()
                broken = self.broken_version(how)
                with self.captureOnCommitCallbacks(execute=False):
                    job = index_job_start(model_version=broken)
                tasks.index_batch_task.apply(args=[job.batches.first().pk])  # retried, then the job fails
                job.refresh_from_db()
                self.assertEqual(job.status, IndexJob.Status.FAILED)
                self.assertIn("could not be loaded", job.error)
                self.assertIn("embedder.keras" if how != "bad meta" else "meta.json", job.error)
                with self.assertRaisesMessage(ActivationRefused, "Reindex it first"):
                    model_version_activate(model_version=broken)
                self.assertEqual(list(ModelVersion.objects.filter(serving__is_active=True)), [self.active])
                self.search_works()

    def test_the_active_models_file_going_bad_after_loading_does_not_stop_search(self):
        self.search_works()  # loads and caches the active model
        (self.active.workdir / "embedder.keras").write_bytes(b"garbage")
        self.search_works()
        forget()  # a new process would have to load it: photo search says why, similar items go on
        response = self.client.post(reverse("search:api_search"), {"image": _upload(shape_png())})
        self.assertEqual(response.status_code, 503)
        self.assertIn("could not be loaded", response.json()["error"])
        self.assertEqual(product_similar(product=self.products[0], k=3).state, SimilarItems.READY)
        self.assertEqual(self.client.get(reverse("search:api_product_similar", args=[self.products[0].pk])).status_code, 200)
        self.assertTrue(model_version_is_active(model_version=self.active))


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("p.png", data, content_type="image/png")


@override_settings(EMBEDDING_BATCH_SIZE=2)
class ConcurrencyTests(PrivateBrokerMixin, LiveServerTestCase):
    def test_16_concurrent_searches_during_a_reindex_see_no_errors(self):
        active = tiny_model_version()
        images = self.catalogue(12)
        # Indexed here rather than by the worker (the messages it also sent are no-ops by then).
        index_and_activate(active)
        worker = self.worker(CELERY_VISIBILITY_TIMEOUT="30")
        candidate = tiny_model_version()
        photo = image_bytes(shape_image("circle", size=20))
        boundary = "lookalike-boundary"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n"
        ).encode() + photo + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n3\r\n--{boundary}--\r\n".encode()
        results: list[tuple[int, int | None, str, bool]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(17)
        job_finished = threading.Event()
        product_url = f"{self.live_server_url}/api/products/{images[0].product_id}/similar?k=3"

        def search(n: int) -> tuple[int, dict]:
            if n % 2 == 0:
                request = urllib.request.Request(
                    f"{self.live_server_url}/api/search", data=body, method="POST",
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
            else:
                request = urllib.request.Request(product_url)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, {"error": exc.read().decode(errors="replace")[:300]}
            except Exception as exc:  # noqa: BLE001 - a refused or reset connection is an error too
                return 0, {"error": repr(exc)}

        def client(n: int):
            barrier.wait(timeout=30)
            rounds = 0
            # Until the reindex is over (at least twice, at most 40 times per client).
            while rounds < 2 or (not job_finished.is_set() and rounds < 40):
                during = not job_finished.is_set()
                status, payload = search(n + rounds)
                with lock:
                    results.append((status, payload.get("model_version"), payload.get("error", ""), during))
                rounds += 1

        self.assertEqual(search(0)[0], 200)  # the web process loads the active model once
        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        job = index_job_start(model_version=candidate)
        barrier.wait(timeout=30)
        self.wait_job(job, 120, worker)
        job_finished.set()
        for thread in threads:
            thread.join(timeout=120)
        self.assertEqual(job.status, IndexJob.Status.DONE)
        self.assertGreaterEqual(len(results), 32)
        self.assertGreaterEqual(sum(1 for r in results if r[3]), 16)  # searches while the job ran
        self.assertEqual([r for r in results if r[0] != 200], [])
        self.assertEqual({r[1] for r in results}, {active.pk})  # the new version serves nothing until activated


class ConcurrentActivationTests(TransactionTestCase):
    def test_two_admins_activating_different_versions_at_once_leave_exactly_one_active(self):
        a, b = model_version_create(dim=3), model_version_create(dim=3)
        for version in (a, b):
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SUCCEEDED)
        product = product_with_vectors(model_version=a, vectors=[[0, 0, 1]])
        image = product.images.get()
        ImageEmbedding.objects.create(image=image, model_version=b, product=product, category_id=product.category_id,
                                      price=product.price, embedding=[1, 0, 0])
        admins = []
        for name in ("alice", "bob"):
            user = User.objects.create_superuser(name, f"{name}@example.com", "pw")
            client = Client()
            client.force_login(user)
            admins.append(client)
        for round_ in range(6):
            barrier = threading.Barrier(2)
            statuses = []

            def activate(client: Client, version: ModelVersion, barrier=barrier, statuses=statuses):
                barrier.wait(timeout=10)
                try:
                    statuses.append(client.post(reverse("admin:ml_modelversion_activate", args=[version.pk])).status_code)
                finally:
                    connection.close()

            order = [(admins[0], a), (admins[1], b)] if round_ % 2 else [(admins[0], b), (admins[1], a)]
            threads = [threading.Thread(target=activate, args=pair) for pair in order]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            self.assertEqual(statuses, [302, 302])
            self.assertEqual(ModelVersion.objects.filter(serving__is_active=True).count(), 1)
        active = ModelVersion.objects.get(serving__is_active=True)
        self.assertIn(active.pk, (a.pk, b.pk))

    def test_racing_activations_at_the_service_never_fail_or_leave_two_active(self):
        versions = [model_version_create(dim=3) for _ in range(2)]
        for round_ in range(10):
            ServingState.objects.update(is_active=False)
            barrier = threading.Barrier(2)
            errors = []

            def activate(version: ModelVersion, barrier=barrier, errors=errors):
                barrier.wait(timeout=10)
                try:
                    model_version_activate(model_version=version, force=True)
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    errors.append(repr(exc))
                finally:
                    connection.close()

            threads = [threading.Thread(target=activate, args=(v,)) for v in versions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            self.assertEqual(errors, [], f"round {round_}")
            self.assertEqual(ModelVersion.objects.filter(serving__is_active=True).count(), 1)
