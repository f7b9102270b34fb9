"""The periodic repair (search.indexing.repair) on a real worker and a private Redis: a broker
flushed mid-reindex, a lost finish message, lost training, images that bypassed the signals."""

from __future__ import annotations

import socket
import time
from unittest import mock

from django.test import TransactionTestCase, override_settings

from catalog.models import Product, ProductImage

from ml.tests.test_django_training import queue_length
from search import tasks
from search.indexing.batches import index_batch_run
from search.indexing.jobs import index_job_start
from search.indexing.repair import lifecycle_repair
from search.models import IndexBatch, IndexJob

from .factories import index_and_activate
from .processes import PrivateBrokerMixin, wait_for
from .tiny_model import tiny_model_version


@override_settings(EMBEDDING_BATCH_SIZE=2)
class RepairTests(PrivateBrokerMixin, TransactionTestCase):
    def flush_broker(self) -> None:
        with socket.create_connection(("127.0.0.1", self.redis.port), timeout=5) as s:
            s.sendall(b"FLUSHALL\r\n")  # the private server of this test, never the shared one
            self.assertTrue(s.recv(16).startswith(b"+OK"))

    def test_broker_flushed_mid_reindex_the_repair_task_completes_the_job_embedding_each_image_once(self):
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
        self.flush_broker()
        wait_for(
            lambda: not IndexBatch.objects.filter(job=job, attempts__gte=1, finished_at__isnull=True).exists(),
            timeout=60,
            what="the worker to finish the batch it held",
        )
        time.sleep(2)
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.RUNNING)
        self.assertLess(job.batches_done, job.batches_total)  # stuck: the other batches' messages are gone
        with override_settings(REPAIR_STALE_AFTER=0):
            report = tasks.lifecycle_repair_task.apply().get()
        self.assertEqual(len(report["batches_requeued"]), job.batches_total - job.batches_done)
        job = self.wait_job(job, 120, worker)
        self.assertEmbeddedOnce(job, version, images)

    def test_the_repair_finishes_a_job_whose_finish_message_was_lost_and_requeues_lost_training(self):
        from ml.services import model_version_create as training_create

        version = tiny_model_version()
        self.catalogue(3)
        job = index_job_run_here_without_finish(index_job_start(model_version=version))
        queued = training_create(architecture="classifier", variant="softmax", enqueue=False)
        self.flush_broker()  # the batches' messages, already run here
        with override_settings(REPAIR_STALE_AFTER=0):
            report = lifecycle_repair()
        self.assertEqual(report.jobs_finished, [job.pk])
        self.assertEqual(report.versions_requeued, [queued.pk])
        self.assertEqual((queue_length("embeddings"), queue_length("training")), (1, 1))
        # Fresh work is left alone: nothing is stale yet.
        self.flush_broker()
        self.assertEqual(lifecycle_repair(stale_after=3600).versions_requeued, [])

    def test_images_that_bypassed_the_signals_are_embedded_for_the_active_version(self):
        version = tiny_model_version()
        self.catalogue(2)
        index_and_activate(version)
        self.flush_broker()
        ProductImage.objects.bulk_create(
            [
                ProductImage(
                    product=Product.objects.first(),
                    image=ProductImage.objects.first().image.name,
                    width=16,
                    height=16,
                    sha256="0" * 64,
                    position=5,
                )
            ]
        )
        report = lifecycle_repair(stale_after=0)
        self.assertEqual(len(report.jobs_started), 1)
        self.assertEqual(IndexJob.objects.get(pk=report.jobs_started[0]).total, 1)
        self.assertEqual(lifecycle_repair(stale_after=0).jobs_started, [])  # a job runs for it now


def index_job_run_here_without_finish(job: IndexJob) -> IndexJob:
    """Run a job's batches here as if the last batch's finish message had been lost."""
    with mock.patch("search.indexing.enqueue.job_finish"):
        for batch in job.batches.all():
            index_batch_run(batch_id=batch.pk)
    job.refresh_from_db()
    return job
