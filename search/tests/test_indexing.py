"""Reindex jobs, batch tasks, failures, activation and the signals, with a real tiny model."""

from __future__ import annotations

from unittest import mock

import numpy as np
from django.test import TestCase, override_settings

from catalog.models import ProductImage
from ml.models import ModelVersion
from search import tasks
from search.indexing.batches import _batch_write
from search.indexing.embedding import IndexInfrastructureError, images_embed
from search.indexing.jobs import index_job_cancel, index_job_start
from search.indexing.progress import index_coverage
from search.indexing.writes import image_embed
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob
from search.queries.similar import product_similar
from search.serving.activation import (
    ActivationRefused,
    VectorsInUse,
    model_version_activate,
    model_version_vectors_delete,
)
from search.serving.hnsw import hnsw_index_build, hnsw_index_exists
from search.serving.versions import model_version_is_active

from .factories import (
    COLORS,
    SHAPES,
    model_version_create,
    product_create,
    product_with_vectors,
    serving_set,
    shape_png,
)
from .tiny_model import tiny_model_version


class IndexingTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        cls.products = [product_create(images=[shape_png(s, color=COLORS[i])]) for i, s in enumerate(SHAPES)]
        cls.products.append(product_create(images=[shape_png("circle"), shape_png("bar")]))

    def start(self, **kwargs) -> IndexJob:
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            job = index_job_start(model_version=self.version, **kwargs)
        self.assertEqual(len(callbacks), 1)  # one callback enqueues every batch
        return job

    def run_all(self, job: IndexJob) -> IndexJob:
        for batch in job.batches.order_by("number"):
            tasks.index_batch_task.apply(args=[batch.pk]).get()
        tasks.index_job_finish_task.apply(args=[job.pk]).get()
        job.refresh_from_db()
        return job


@override_settings(EMBEDDING_BATCH_SIZE=2)
class IndexJobTests(IndexingTestCase):
    def test_job_splits_images_into_batches(self):
        job = self.start()
        self.assertEqual((job.total, job.batches_total, job.status), (6, 3, IndexJob.Status.RUNNING))
        self.assertEqual([len(b.image_ids) for b in job.batches.order_by("number")], [2, 2, 2])

    def test_all_batches_embed_everything_and_build_the_index(self):
        job = self.run_all(self.start())
        self.assertEqual((job.status, job.done, job.failed, job.batches_done), (IndexJob.Status.DONE, 6, 0, 3))
        self.assertEqual(job.progress_fraction, 1.0)
        self.assertEqual(ImageEmbedding.objects.filter(model_version=self.version).count(), 6)
        self.assertTrue(index_coverage(model_version=self.version).complete)
        self.assertTrue(hnsw_index_exists(model_version=self.version))
        row = ImageEmbedding.objects.filter(model_version=self.version).first()
        self.assertEqual(len(row.vector), self.version.dim)

    def test_an_image_deleted_during_the_model_call_is_dropped_and_the_job_finishes(self):
        job = self.start()
        batch = job.batches.order_by("number").first()
        images = list(ProductImage.objects.filter(pk__in=batch.image_ids).select_related("product"))
        vectors, failures = images_embed(model_version=self.version, images=images)
        ProductImage.objects.filter(pk=batch.image_ids[0]).delete()  # while the model ran
        self.assertTrue(_batch_write(batch=batch, vectors=vectors, failures=failures))
        self.assertFalse(ImageEmbedding.objects.filter(image_id=batch.image_ids[0]).exists())
        for other in job.batches.exclude(pk=batch.pk):
            tasks.index_batch_task.apply(args=[other.pk]).get()
        tasks.index_job_finish_task.apply(args=[job.pk]).get()
        job.refresh_from_db()
        self.assertEqual((job.status, job.total, job.done), (IndexJob.Status.DONE, 5, 5))

    def test_a_job_cancelled_during_the_model_call_gets_no_vectors_from_it(self):
        job = self.start()
        batch = job.batches.order_by("number").first()
        images = list(ProductImage.objects.filter(pk__in=batch.image_ids).select_related("product"))
        vectors, failures = images_embed(model_version=self.version, images=images)
        index_job_cancel(job=job)
        self.assertFalse(_batch_write(batch=batch, vectors=vectors, failures=failures))
        self.assertFalse(ImageEmbedding.objects.filter(model_version=self.version).exists())

    def test_a_batch_whose_task_fails_for_good_fails_the_job_and_blames_no_image(self):
        serving_set(self.version, auto_activate=True)
        job = self.start()
        first, *rest = job.batches.order_by("number")
        tasks.index_batch_task.on_failure(RuntimeError("decoder crashed"), "task-id", (first.pk,), {}, None)
        for batch in rest:
            tasks.index_batch_task.apply(args=[batch.pk]).get()
        tasks.index_job_finish_task.apply(args=[job.pk]).get()
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.FAILED)
        self.assertIn("Batch 0 could not be embedded: RuntimeError: decoder crashed", job.error)
        self.assertFalse(EmbeddingFailure.objects.exists())
        self.assertFalse(model_version_is_active(model_version=self.version))

    def test_batch_task_run_twice_leaves_the_same_rows(self):
        job = self.start()
        batch = job.batches.order_by("number").first()
        tasks.index_batch_task.apply(args=[batch.pk]).get()
        first = [(r.id, r.image_id, r.vector) for r in ImageEmbedding.objects.order_by("id")]
        # Redelivered (ack lost after the commit): the batch is recognised as finished.
        self.assertFalse(tasks.index_batch_task.apply(args=[batch.pk]).get())
        second = [(r.id, r.image_id, r.vector) for r in ImageEmbedding.objects.order_by("id")]
        self.assertEqual([r[:2] for r in first], [r[:2] for r in second])
        for a, b in zip(first, second, strict=True):
            np.testing.assert_allclose(a[2], b[2], rtol=1e-5)
        job.refresh_from_db()
        self.assertEqual((job.done, job.batches_done), (2, 1))  # counted once

    def test_embedding_an_image_twice_upserts_one_row(self):
        serving_set(self.version, is_active=True)
        image = self.products[0].images.get()
        image_embed(image_id=image.pk)
        first = ImageEmbedding.objects.get(image=image)
        image_embed(image_id=image.pk)
        second = ImageEmbedding.objects.get(image=image)
        self.assertEqual(first.pk, second.pk)
        np.testing.assert_allclose(first.vector, second.vector, rtol=1e-5)

    def test_corrupt_image_is_marked_failed_and_the_others_are_indexed(self):
        bad = product_create(images=[shape_png("circle")]).images.get()
        with open(bad.image.path, "wb") as f:  # the file went bad on disk after upload
            f.write(b"\x89PNG\r\n\x1a\n this is not really a png")
        job = self.run_all(self.start())
        self.assertEqual((job.done, job.failed, job.total, job.status), (6, 1, 7, IndexJob.Status.DONE))
        failure = EmbeddingFailure.objects.get(model_version=self.version)
        self.assertEqual(failure.image_id, bad.pk)
        self.assertTrue(failure.reason)
        self.assertFalse(ImageEmbedding.objects.filter(image=bad).exists())
        coverage = index_coverage(model_version=self.version)
        self.assertEqual(
            (coverage.total_images, coverage.embedded, coverage.failed, coverage.complete), (7, 6, 1, True)
        )

    def test_model_that_fails_to_load_fails_the_job(self):
        broken = model_version_create(dim=8)
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=broken)
        result = tasks.index_batch_task.apply(args=[job.batches.first().pk])  # retried, then failed
        self.assertIsInstance(result.result, IndexInfrastructureError)
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.FAILED)
        self.assertIn("could not be loaded", job.error)
        self.assertFalse(EmbeddingFailure.objects.filter(model_version=broken).exists())

    def test_a_second_start_joins_the_unfinished_job_which_still_completes(self):
        first = self.start()
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            second = index_job_start(model_version=self.version)
        self.assertEqual((second.pk, second.images_queued, len(callbacks)), (first.pk, 0, 0))  # nothing queued twice
        job = self.run_all(first)
        images = ProductImage.objects.count()
        self.assertEqual((job.status, job.processed, job.total), (IndexJob.Status.DONE, images, images))

    def test_auto_activate_switches_when_the_job_is_done(self):
        serving_set(self.version, auto_activate=True)
        self.run_all(self.start())
        self.assertTrue(model_version_is_active(model_version=self.version))

    def test_cancelled_job_batches_do_nothing(self):
        job = index_job_cancel(job=self.start())
        self.assertEqual(job.status, IndexJob.Status.CANCELLED)
        self.assertFalse(tasks.index_batch_task.apply(args=[job.batches.first().pk]).get())
        self.assertFalse(ImageEmbedding.objects.exists())

    def test_only_missing(self):
        self.run_all(self.start())
        product_create(images=[shape_png("triangle")])
        job = self.start(only_missing=True)
        self.assertEqual(job.total, 1)

    def test_refuses_a_version_that_did_not_succeed(self):
        failed = model_version_create(status=ModelVersion.Status.FAILED)
        with self.assertRaisesMessage(ValueError, "succeeded"):
            index_job_start(model_version=failed)


class ActivationTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.a = model_version_create(dim=2, active=True)
        cls.b = model_version_create(dim=3)
        cls.query = product_create(images=[shape_png()])
        cls.x = product_create(images=[shape_png()])
        cls.y = product_create(images=[shape_png()])
        from .factories import embedding_put

        img = {p: p.images.get() for p in (cls.query, cls.x, cls.y)}
        # Under A, x is nearest; under B, y is nearest.
        for p, v in ((cls.query, [0, 0]), (cls.x, [1, 0]), (cls.y, [2, 0])):
            embedding_put(image=img[p], model_version=cls.a, vector=v)
        cls.img = img

    def put_b(self, product, vector):
        from .factories import embedding_put

        embedding_put(image=self.img[product], model_version=self.b, vector=vector)

    def test_during_reindex_of_b_queries_use_a_and_after_activation_b(self):
        IndexJob.objects.create(model_version=self.b, status=IndexJob.Status.RUNNING, total=3)
        self.put_b(self.query, [0, 0, 0])
        self.put_b(self.y, [0, 0, 1])  # B half written: x not yet embedded
        similar = product_similar(product=self.query)
        self.assertEqual(similar.model_version, self.a)
        self.assertEqual([i.product for i in similar.items], [self.x, self.y])
        with self.assertRaisesMessage(ActivationRefused, "2 of 3"):
            model_version_activate(model_version=self.b)
        self.put_b(self.x, [0, 0, 5])
        model_version_activate(model_version=self.b)
        similar = product_similar(product=self.query)
        self.assertEqual(similar.model_version, self.b)
        self.assertEqual([i.product for i in similar.items], [self.y, self.x])
        self.assertEqual([i.distance for i in similar.items], [1.0, 5.0])
        self.assertEqual(list(ModelVersion.objects.filter(serving__is_active=True)), [self.b])

    def test_force_activates_without_coverage(self):
        model_version_activate(model_version=self.b, force=True)
        self.assertTrue(model_version_is_active(model_version=self.b))
        self.assertFalse(model_version_is_active(model_version=self.a))

    def test_refuses_a_version_that_did_not_succeed_even_with_force(self):
        failed = model_version_create(status=ModelVersion.Status.FAILED)
        with self.assertRaisesMessage(ActivationRefused, "only a succeeded version"):
            model_version_activate(model_version=failed, force=True)

    def test_vectors_delete_refuses_the_active_version(self):
        with self.assertRaises(VectorsInUse):
            model_version_vectors_delete(model_version=self.a)
        self.assertEqual(ImageEmbedding.objects.filter(model_version=self.a).count(), 3)

    def test_vectors_delete_removes_an_old_versions_rows_and_index(self):
        for p in (self.query, self.x, self.y):
            self.put_b(p, [1, 2, 3])
        hnsw_index_build(model_version=self.b)
        with self.captureOnCommitCallbacks(execute=True):  # the index is dropped after the commit
            self.assertEqual(model_version_vectors_delete(model_version=self.b), 3)
        self.assertFalse(ImageEmbedding.objects.filter(model_version=self.b).exists())
        self.assertFalse(hnsw_index_exists(model_version=self.b))
        self.assertEqual(ImageEmbedding.objects.filter(model_version=self.a).count(), 3)


class SignalTests(IndexingTestCase):
    def test_new_image_is_embedded_for_the_active_version_after_commit(self):
        serving_set(self.version, is_active=True)
        with mock.patch("search.indexing.enqueue.image_embed") as delay:
            with self.captureOnCommitCallbacks(execute=True):
                product = product_create(images=[shape_png("triangle")])
                delay.assert_not_called()  # not before the commit
        image = product.images.get()
        delay.assert_called_once_with(image.pk)
        self.assertEqual(tasks.image_embed_task.apply(args=[image.pk]).get(), [self.version.pk])
        self.assertTrue(ImageEmbedding.objects.filter(image=image, model_version=self.version).exists())

    def test_nothing_is_enqueued_without_an_active_version(self):
        with mock.patch("search.indexing.enqueue.image_embed") as delay:
            with self.captureOnCommitCallbacks(execute=True):
                product_create()
        delay.assert_not_called()

    def test_raw_fixture_loads_are_skipped(self):
        serving_set(self.version, is_active=True)
        from search.receivers import product_image_saved

        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            product_image_saved(ProductImage, instance=ProductImage.objects.first(), created=True, raw=True)
        self.assertEqual(callbacks, [])

    def test_price_and_category_changes_reach_the_vectors(self):
        version = model_version_create(dim=2)
        product = product_with_vectors(model_version=version, vectors=[[0, 1]])
        other = product_create().category
        product.price, product.category = 99, other
        product.save()
        row = ImageEmbedding.objects.get(product=product)
        self.assertEqual((row.price, row.category_id), (99, other.pk))
