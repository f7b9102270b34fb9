"""Faults with real processes: Celery workers killed with SIGKILL, a Redis server restarted, database
connections terminated and a training run killed mid-epoch (search/tests/processes.py starts them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection
from django.test import TransactionTestCase, override_settings

from ml.models import ModelVersion
from search.indexing.batches import index_batch_run
from search.indexing.jobs import index_job_finish, index_job_start
from search.models import ImageEmbedding, IndexBatch, IndexJob

from .factories import COLORS, SHAPES, category_create, product_create, shape_png
from .processes import ROOT, PrivateBrokerMixin, child_env, wait_for
from .tiny_model import tiny_model_version


@override_settings(EMBEDDING_BATCH_SIZE=3)
class WorkerCrashTests(PrivateBrokerMixin, TransactionTestCase):
    def test_worker_killed_mid_batch_the_job_completes_on_a_new_worker_embedding_each_image_once(self):
        version = tiny_model_version()
        images = self.catalogue(9)
        first = self.worker(CELERY_VISIBILITY_TIMEOUT="3")
        job = index_job_start(model_version=version)  # autocommit: published at once
        started = wait_for(
            lambda: IndexBatch.objects.filter(job=job, attempts__gte=1, finished_at__isnull=True).first(),
            timeout=60,
            what="the first worker to start a batch",
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
        wait_for(
            lambda: IndexBatch.objects.filter(job=job, attempts__gte=1).exists(),
            timeout=60,
            what="the worker to start a batch",
        )
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
        wait_for(
            lambda: IndexBatch.objects.filter(job=job, attempts__gte=1).exists(),
            timeout=60,
            what="the worker to start a batch",
        )
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
            architecture="classifier",
            variant="mlp",
            overrides={"epochs": 4, "image_size": 16, "dim": 8, "batch_size": 4, "augment": False},
        )
        shutil.rmtree(version.workdir, ignore_errors=True)
        self.addCleanup(shutil.rmtree, version.workdir, ignore_errors=True)
        progress = Path(tempfile.mkdtemp()) / "progress"
        self.addCleanup(shutil.rmtree, progress.parent)
        child = subprocess.Popen(
            [sys.executable, "-c", self.CHILD],
            cwd=ROOT,
            env=child_env(VERSION=str(version.pk), PROGRESS=str(progress)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
