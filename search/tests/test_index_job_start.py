"""Starting reindex jobs: at most one unfinished job per model version, enforced by the database;
a bulk import during a full reindex adds its images to that job instead of cancelling it; two
starts in concurrent transactions end with one job."""

from __future__ import annotations

import threading
from unittest import mock

from django.db import IntegrityError, connection, transaction
from django.test import TestCase, TransactionTestCase

from catalog.models import Product, ProductImage
from search.indexing import jobs
from search.indexing.jobs import index_job_cancel, index_job_start, index_missing_for_serving_versions
from search.models import EmbeddingFailure, IndexJob

from .factories import category_create, model_version_create


def images_add(n: int) -> list[int]:
    """`n` one-image products added as a bulk import adds them (rows only, no post_save)."""
    category = category_create()
    start = Product.objects.count()
    products = Product.objects.bulk_create(
        Product(sku=f"J-{start + i}", title=f"Job {start + i}", category=category, price=10) for i in range(n)
    )
    images = ProductImage.objects.bulk_create(
        ProductImage(product=p, image=f"products/none/{p.sku}.png", width=16, height=16, sha256="0" * 64)
        for p in products
    )
    return [image.pk for image in images]


def job_image_ids(job: IndexJob) -> list[int]:
    return sorted(i for batch in job.batches.all() for i in batch.image_ids)


class IndexJobStartTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=3, active=True)
        cls.first = images_add(3)

    def start(self, **kwargs) -> IndexJob:
        with self.captureOnCommitCallbacks(execute=False):
            return index_job_start(model_version=self.version, **kwargs)

    def test_the_database_refuses_a_second_unfinished_job_for_a_version(self):
        IndexJob.objects.create(model_version=self.version, status=IndexJob.Status.RUNNING)
        with self.assertRaises(IntegrityError), transaction.atomic():
            IndexJob.objects.create(model_version=self.version, status=IndexJob.Status.BUILDING_INDEX)
        # Finished ones are history: any number of them.
        for status in (IndexJob.Status.DONE, IndexJob.Status.FAILED, IndexJob.Status.CANCELLED):
            IndexJob.objects.create(model_version=self.version, status=status)
        self.assertEqual(IndexJob.objects.filter(model_version=self.version).count(), 4)

    def test_a_bulk_import_during_a_full_reindex_adds_its_images_to_it(self):
        full = self.start()
        added = images_add(2)
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            started = index_missing_for_serving_versions()
        self.assertEqual([job.pk for job in started], [full.pk])
        full.refresh_from_db()
        self.assertEqual(full.status, IndexJob.Status.RUNNING)  # not cancelled
        self.assertFalse(full.only_missing)  # still the full reindex
        self.assertEqual((full.total, full.batches_total), (5, full.batches.count()))
        self.assertEqual(job_image_ids(full), sorted(self.first + added))
        self.assertEqual(len(callbacks), 1)  # the added batch is queued after commit
        self.assertEqual(IndexJob.objects.filter(status__in=IndexJob.UNFINISHED).count(), 1)

    def test_an_import_with_nothing_new_adds_nothing_to_the_running_job(self):
        full = self.start()
        batches = full.batches.count()
        self.assertEqual(self.start(only_missing=True).pk, full.pk)
        full.refresh_from_db()
        self.assertEqual((full.total, full.batches.count()), (3, batches))

    def test_a_second_full_start_joins_the_running_full_job(self):
        full = self.start()
        self.assertEqual(self.start().pk, full.pk)
        self.assertEqual(IndexJob.objects.count(), 1)

    def test_a_full_start_extends_a_running_only_missing_job_to_every_image(self):
        EmbeddingFailure.objects.create(image_id=self.first[0], model_version=self.version, reason="unreadable")
        partial = self.start(only_missing=True)
        self.assertEqual(partial.total, 2)
        full = self.start()
        self.assertEqual(full.pk, partial.pk)
        full.refresh_from_db()
        self.assertEqual((full.status, full.only_missing, full.total), (IndexJob.Status.RUNNING, False, 3))
        self.assertEqual(job_image_ids(full), self.first)

    def test_an_import_while_the_index_builds_queues_its_images_one_by_one(self):
        job = self.start()
        IndexJob.objects.filter(pk=job.pk).update(status=IndexJob.Status.BUILDING_INDEX, batches_done=job.batches_total)
        added = images_add(2)
        with mock.patch("search.indexing.enqueue.image_embed") as embed, self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.start(only_missing=True).pk, job.pk)
        self.assertEqual(sorted(call.args[0] for call in embed.call_args_list), added)
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.BUILDING_INDEX)

    def test_after_a_cancel_a_new_job_starts(self):
        first = index_job_cancel(job=self.start())
        second = self.start()
        self.assertNotEqual(first.pk, second.pk)
        self.assertEqual(second.status, IndexJob.Status.RUNNING)


class ConcurrentIndexJobStartTests(TransactionTestCase):
    """Two starts in two real transactions on two connections, held open side by side."""

    def race(self, *kwargs_pair: dict) -> tuple[list[IndexJob], list[str]]:
        barrier = threading.Barrier(len(kwargs_pair))
        ensure = jobs.version_storage_ensure
        results: list[IndexJob] = []
        errors: list[str] = []

        def side_by_side(**kwargs):
            # Inside each start's transaction: both wait here for the other, so without a lock both
            # read "no unfinished job" before either commits. A start that must wait for the other
            # (the fix) finds the barrier broken after its timeout and goes on.
            try:
                barrier.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
            return ensure(**kwargs)

        def start(kwargs: dict):
            try:
                results.append(index_job_start(model_version=self.version, **kwargs))
            except Exception as exc:  # noqa: BLE001 - collected and reported by the test
                errors.append(repr(exc))
            finally:
                connection.close()

        with (
            mock.patch.object(jobs, "version_storage_ensure", side_by_side),
            mock.patch("search.indexing.enqueue.batches") as enqueued,
        ):
            threads = [threading.Thread(target=start, args=(kwargs,)) for kwargs in kwargs_pair]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
        self.enqueued = [list(call.args[0]) for call in enqueued.call_args_list]
        return results, errors

    def setUp(self):
        self.version = model_version_create(dim=3, active=True)
        self.images = images_add(3)

    def test_two_concurrent_full_starts_make_one_job(self):
        results, errors = self.race({}, {})
        self.assertEqual(errors, [])
        unfinished = list(IndexJob.objects.filter(status__in=IndexJob.UNFINISHED))
        self.assertEqual(len(unfinished), 1)
        self.assertEqual({job.pk for job in results}, {unfinished[0].pk})  # the second got the first's job
        self.assertEqual(len(self.enqueued), 1)  # its batches queued once

    def test_an_import_racing_a_full_start_joins_it(self):
        results, errors = self.race({}, {"only_missing": True})
        self.assertEqual(errors, [])
        unfinished = list(IndexJob.objects.filter(status__in=IndexJob.UNFINISHED))
        self.assertEqual(len(unfinished), 1)
        job = unfinished[0]
        self.assertEqual({r.pk for r in results}, {job.pk})
        self.assertFalse(job.only_missing)  # whichever came first, the full reindex is what runs
        self.assertEqual(job_image_ids(job), self.images)  # every image once
        self.assertFalse(IndexJob.objects.filter(status=IndexJob.Status.CANCELLED).exists())
