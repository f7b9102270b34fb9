"""A batch's vectors go in with one binary COPY and one INSERT … SELECT … ON CONFLICT
(search.indexing.vector_copy): exact floats, the catalogue's copies, idempotency, refusals, and a COPY
that fails half-way."""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

import numpy as np
from django.db import DataError, connection, transaction
from django.test import TestCase, override_settings

from catalog.models import Product, ProductImage
from search.indexing import vector_copy
from search.indexing.batches import index_batch_run
from search.indexing.embedding import images_embed
from search.indexing.jobs import index_job_start
from search.indexing.vector_copy import copy_binary, embeddings_upsert
from search.indexing.writes import embeddings_write, images_lock
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob
from search.serving.activation import model_version_storage_set

from .factories import model_version_create, product_create, shape_png


def _encode_unchecked(image_ids, vectors) -> bytes:
    """copy_binary without its NaN check: what a buggy encoder would send, for the server to refuse."""
    with mock.patch.object(vector_copy.np, "isfinite", return_value=np.ones(1, bool)):
        return copy_binary(image_ids, vectors)


class CopyWriteTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=4)
        model_version_storage_set(model_version=cls.version, storage="vector")  # float32: exact floats
        cls.products = [product_create(images=[shape_png("circle")], price=p) for p in (10, 20, 30)]
        Product.objects.filter(pk=cls.products[2].pk).update(price=None)
        cls.images = list(ProductImage.objects.order_by("id"))

    def write(self, vectors: dict[int, np.ndarray], version=None) -> None:
        with transaction.atomic():
            images_lock(image_ids=list(vectors))
            embeddings_write(model_version=version or self.version, vectors=vectors, failures={})

    def test_vectors_are_stored_exactly_with_the_products_copies(self):
        rng = np.random.default_rng(0)
        tricky = np.array([1e-38, -np.finfo(np.float32).max, 0.1, -0.0], np.float32)
        vectors = {
            im.pk: (tricky if n == 0 else rng.standard_normal(4).astype(np.float32)) for n, im in enumerate(self.images)
        }
        self.write(vectors)
        rows = {r.image_id: r for r in ImageEmbedding.objects.filter(model_version=self.version)}
        self.assertEqual(set(rows), set(vectors))
        for image in self.images:
            row = rows[image.pk]
            np.testing.assert_array_equal(np.asarray(row.embedding, np.float32), vectors[image.pk])
            product = Product.objects.get(pk=image.product_id)
            self.assertEqual(
                (row.product_id, row.category_id, row.price), (product.pk, product.category_id, product.price)
            )
        self.assertIsNone(rows[self.images[2].pk].price)
        self.assertEqual(rows[self.images[0].pk].price, Decimal("10.00"))

    def test_writing_again_updates_the_same_rows(self):
        first = {im.pk: np.full(4, 1.0, np.float32) for im in self.images}
        self.write(first)
        ids = dict(ImageEmbedding.objects.values_list("image_id", "id"))
        self.write({im.pk: np.full(4, 2.0, np.float32) for im in self.images})
        self.assertEqual(dict(ImageEmbedding.objects.values_list("image_id", "id")), ids)
        self.assertEqual({tuple(r) for r in ImageEmbedding.objects.values_list("embedding", flat=True)}, {(2.0,) * 4})

    def test_two_writes_in_one_transaction_each_write_only_their_own_rows(self):
        other = model_version_create(dim=2)
        with transaction.atomic():
            images_lock(image_ids=[im.pk for im in self.images])
            embeddings_write(
                model_version=self.version, vectors={self.images[0].pk: np.ones(4, np.float32)}, failures={}
            )
            embeddings_write(model_version=other, vectors={self.images[1].pk: np.ones(2, np.float32)}, failures={})
        self.assertEqual(
            list(ImageEmbedding.objects.filter(model_version=self.version).values_list("image_id", flat=True)),
            [self.images[0].pk],
        )
        self.assertEqual(
            list(ImageEmbedding.objects.filter(model_version=other).values_list("image_id", flat=True)),
            [self.images[1].pk],
        )

    def test_a_vector_with_nan_or_infinity_is_refused_before_the_database(self):
        for bad in (np.nan, np.inf, -np.inf):
            with self.subTest(bad=bad), self.assertRaisesMessage(ValueError, "must not contain NaN or infinity"):
                copy_binary([1, 2], np.array([[0.0, 1.0], [bad, 0.0]], np.float32))
        with self.assertRaisesMessage(ValueError, "one vector per image"):
            copy_binary([1, 2], np.zeros((3, 2), np.float32))

    def test_the_server_refuses_a_nan_that_got_past_the_encoder_and_nothing_is_written(self):
        ids = [im.pk for im in self.images]
        vectors = np.ones((3, 4), np.float32)
        vectors[2, 1] = np.nan  # the last row: the first two are already streamed when the server refuses
        with self.assertRaises(DataError), transaction.atomic():
            images_lock(image_ids=ids)
            with connection.cursor() as cursor, mock.patch.object(vector_copy, "copy_binary", _encode_unchecked):
                embeddings_upsert(cursor=cursor, model_version_id=self.version.pk, image_ids=ids, vectors=vectors)
        self.assertFalse(ImageEmbedding.objects.exists())


@override_settings(EMBEDDING_BATCH_SIZE=10)
class BatchTransactionTests(TestCase):
    """One transaction per batch: a COPY that fails half-way leaves no rows and does not count the batch."""

    @classmethod
    def setUpTestData(cls):
        from .tiny_model import tiny_model_version

        cls.version = tiny_model_version()
        for n in range(4):
            product_create(images=[shape_png(("circle", "square", "bar", "triangle")[n])])

    def start(self) -> IndexJob:
        with self.captureOnCommitCallbacks(execute=False):
            return index_job_start(model_version=self.version)

    def test_a_copy_that_fails_half_way_leaves_no_partial_rows_and_the_batch_runs_again(self):
        job = self.start()
        batch = job.batches.get()
        real = vector_copy.copy_binary

        def broken_last_row(image_ids, vectors):
            vectors = np.array(vectors, np.float32)
            vectors[-1, 0] = np.nan
            return _encode_unchecked(image_ids, vectors)

        with mock.patch.object(vector_copy, "copy_binary", side_effect=broken_last_row), self.assertRaises(DataError):
            index_batch_run(batch_id=batch.pk)
        self.assertFalse(ImageEmbedding.objects.exists())
        self.assertFalse(EmbeddingFailure.objects.exists())
        batch.refresh_from_db()
        job.refresh_from_db()
        self.assertIsNone(batch.finished_at)
        self.assertEqual((job.done, job.batches_done, job.status), (0, 0, IndexJob.Status.RUNNING))

        self.assertIs(vector_copy.copy_binary, real)
        with self.captureOnCommitCallbacks(execute=False):
            self.assertTrue(index_batch_run(batch_id=batch.pk))  # the retry
        self.assertEqual(ImageEmbedding.objects.filter(model_version=self.version).count(), 4)
        job.refresh_from_db()
        self.assertEqual((job.done, job.batches_done), (4, 1))

    def test_a_batch_reads_and_writes_in_a_fixed_number_of_round_trips(self):
        job = self.start()
        batch = job.batches.get()
        images_embed(model_version=self.version, images=list(ProductImage.objects.all()))  # model loaded
        # Before the model: batch + job + version, attempts (UPDATE … RETURNING), image rows. The
        # transaction (a savepoint here, BEGIN/COMMIT in a worker): synchronous_commit, job lock, image
        # + product lock, the version's vector storage, temporary table, COPY, upsert, stale failures,
        # batch finished, job counts, job refresh. None of them per image.
        with self.captureOnCommitCallbacks(execute=False), self.assertNumQueries(16):
            self.assertTrue(index_batch_run(batch_id=batch.pk))

    def test_each_batch_logs_its_stage_times(self):
        batch = self.start().batches.get()
        with self.captureOnCommitCallbacks(execute=False), self.assertLogs("search.indexing.batches", "INFO") as logs:
            index_batch_run(batch_id=batch.pk)
        line = next(m for m in logs.output if "Index batch 0 of job" in m)
        self.assertRegex(line, r"4 embedded, 0 failed; ms rows=[\d.]+ embed=[\d.]+ write=[\d.]+ total=[\d.]+")


class HalfvecCopyTests(TestCase):
    """The COPY path into a halfvec version: its column, rounded once; a value float16 cannot hold
    refuses the batch before anything is written."""

    def test_halfvec_rows_and_refusal(self):
        from search.storage import HALFVEC

        version = model_version_create(dim=3)
        images = [product_create().images.get() for _ in range(2)]
        value = np.array([0.1, 1 / 3, 2.0], np.float32)
        with transaction.atomic(), connection.cursor() as cursor:
            written = embeddings_upsert(
                cursor=cursor,
                model_version_id=version.pk,
                image_ids=[images[0].pk],
                vectors=value[None],
                storage=HALFVEC,
            )
        self.assertEqual(written, 1)
        row = ImageEmbedding.objects.get(image=images[0], model_version=version)
        self.assertIsNone(row.embedding)
        np.testing.assert_array_equal(row.vector, value.astype(np.float16).astype(np.float32))
        with self.assertRaisesMessage(ValueError, "within ±65504"), transaction.atomic(), connection.cursor() as cursor:
            embeddings_upsert(
                cursor=cursor,
                model_version_id=version.pk,
                image_ids=[images[1].pk],
                vectors=np.array([[0.0, 1e6, 0.0]], np.float32),
                storage=HALFVEC,
            )
        self.assertFalse(ImageEmbedding.objects.filter(image=images[1]).exists())
