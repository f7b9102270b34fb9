"""End to end: a real Celery worker consumes the reindex from Redis and fills pgvector."""

from __future__ import annotations

import time

from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections
from django.test import TransactionTestCase, override_settings

from config.celery import app
from search.indexing.jobs import index_job_start
from search.indexing.progress import index_coverage
from search.models import ImageEmbedding, IndexJob
from search.queries.similar import SimilarItems, product_similar
from search.serving.hnsw import hnsw_index_exists
from search.serving.versions import model_version_is_active

from .factories import COLORS, SHAPES, product_create, shape_png
from .tiny_model import tiny_model_version


def _close_worker_connections(**kwargs) -> None:
    # The worker thread's connection would keep the test database from being dropped.
    connections.close_all()


def _purge(queue: str) -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


@override_settings(EMBEDDING_BATCH_SIZE=3)
class WorkerReindexTests(TransactionTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _purge("embeddings")
        task_postrun.connect(_close_worker_connections, weak=False)
        cls.worker = start_worker(app, queues=["embeddings"], perform_ping_check=False, pool="solo", loglevel="WARNING")
        cls.worker.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.worker.__exit__(None, None, None)
        task_postrun.disconnect(_close_worker_connections)
        super().tearDownClass()

    def setUp(self):
        _purge("embeddings")

    def test_reindex_through_redis_embeds_everything_completes_and_activates(self):
        version = tiny_model_version(auto_activate=True)
        products = [product_create(images=[shape_png(s, color=c)]) for s in SHAPES for c in COLORS[:2]]
        job = index_job_start(model_version=version)  # autocommit: enqueued at once
        self.assertEqual(job.batches_total, 3)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_finished:
                break
            time.sleep(0.2)
        self.assertEqual(job.status, IndexJob.Status.DONE, f"{job.status} {job.processed}/{job.total} {job.error}")
        self.assertEqual((job.total, job.done, job.failed, job.progress_fraction), (8, 8, 0, 1.0))
        self.assertEqual(ImageEmbedding.objects.filter(model_version=version).count(), 8)
        self.assertTrue(index_coverage(model_version=version).complete)
        self.assertTrue(hnsw_index_exists(model_version=version))
        self.assertTrue(
            model_version_is_active(model_version=version)
        )  # auto_activate: the finished job switched queries to it
        similar = product_similar(product=products[0], k=3)
        self.assertEqual((similar.state, len(similar.items)), (SimilarItems.READY, 3))
