"""The index never lies: infrastructure errors fail the job instead of blaming images, a version
without vectors never activates, copies are fresh, an image has one vector or one failure, a job
cancelled while its index builds activates nothing."""

from __future__ import annotations

import threading
from decimal import Decimal
from unittest import mock

from django.core.files.storage import FileSystemStorage
from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase, override_settings

from catalog.models import Product, ProductImage
from ml.models import ModelVersion
from ml.tests.test_django_training import purge_queue
from search import tasks
from search.indexing.batches import index_batch_run
from search.indexing.embedding import images_embed
from search.indexing.jobs import index_job_cancel, index_job_finish, index_job_start
from search.indexing.progress import index_coverage
from search.indexing.writes import embeddings_write, image_embed
from search.models import (
    EmbeddingFailure,
    ImageEmbedding,
    IndexJob,
    ServingState,
)
from search.serving.activation import ActivationRefused, model_version_activate
from search.serving.hnsw import hnsw_index_build
from search.serving.versions import model_version_is_active

from .factories import (
    COLORS,
    SHAPES,
    embedding_put,
    index_job_run_here,
    model_version_create,
    product_create,
    serving_set,
    shape_png,
)
from .tiny_model import tiny_model_version


class RemoteStorage(FileSystemStorage):
    """Storage without local paths, as an object store's backend is."""

    def path(self, name):
        raise NotImplementedError("This backend doesn't support absolute paths.")


def _catalogue(n: int = 6) -> list[Product]:
    return [product_create(images=[shape_png(SHAPES[i % 4], color=COLORS[i % 4])]) for i in range(n)]


@override_settings(EMBEDDING_BATCH_SIZE=3)
class EmptyActivationTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.products = _catalogue()

    def test_storage_without_local_files_fails_the_job_and_activates_nothing(self):
        version = tiny_model_version(auto_activate=True)
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=version)
        storages = {
            "default": {"BACKEND": "search.tests.test_lifecycle.RemoteStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=storages):
            for batch in job.batches.all():
                tasks.index_batch_task.apply(args=[batch.pk])  # retried, then failed for good
        tasks.index_job_finish_task.apply(args=[job.pk]).get()
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.FAILED)
        self.assertIn("no local files", job.error)
        self.assertFalse(EmbeddingFailure.objects.exists())  # no image is blamed for the storage
        self.assertFalse(model_version_is_active(model_version=version))

    def test_a_job_whose_every_image_is_unreadable_does_not_auto_activate(self):
        version = tiny_model_version(auto_activate=True)
        for image in ProductImage.objects.all():
            with open(image.image.path, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n not a png any more")
        job = index_job_run_here(index_job_start(model_version=version))
        self.assertEqual((job.status, job.done, job.failed), (IndexJob.Status.DONE, 0, 6))
        self.assertFalse(model_version_is_active(model_version=version))
        with self.assertRaisesMessage(ActivationRefused, "vectors for 0 of 6 images"):
            model_version_activate(model_version=version)

    def test_activation_is_bounded_by_the_share_of_unreadable_images_and_force_still_works(self):
        version = model_version_create(dim=3)
        images = list(ProductImage.objects.order_by("id"))
        for image in images[:5]:
            embedding_put(image=image, model_version=version, vector=[0, 0, 1])
        EmbeddingFailure.objects.create(image=images[5], model_version=version, reason="unreadable")
        with override_settings(ACTIVATION_MAX_FAILED_FRACTION=0.1):
            with self.assertRaisesMessage(ActivationRefused, "1 unreadable, 16.7%; at most 10.0%"):
                model_version_activate(model_version=version)
        with override_settings(ACTIVATION_MAX_FAILED_FRACTION=0.2):
            model_version_activate(model_version=version)
        self.assertTrue(model_version_is_active(model_version=version))
        ServingState.objects.update(is_active=False)
        model_version_activate(model_version=version, force=True)
        self.assertTrue(model_version_is_active(model_version=version))


class FreshCopiesTests(TestCase):
    def test_image_embed_writes_the_price_and_category_as_they_are_after_the_model_call(self):
        version = tiny_model_version()
        serving_set(version, is_active=True)
        product = _catalogue(1)[0]
        image = product.images.get()
        other = product_create().category
        real = images_embed

        def slow_model(**kwargs):
            result = real(**kwargs)
            # Saved meanwhile without signals (a bulk update, or a save whose sync ran before this write).
            Product.objects.filter(pk=product.pk).update(price=Decimal("99.50"), category=other)
            return result

        with mock.patch("search.indexing.writes.images_embed", side_effect=slow_model):
            self.assertEqual(image_embed(image_id=image.pk), [version.pk])
        row = ImageEmbedding.objects.get(image=image, model_version=version)
        self.assertEqual((row.price, row.category_id), (Decimal("99.50"), other.pk))

    def test_coverage_counts_an_image_with_both_a_vector_and_a_failure_once(self):
        version = model_version_create(dim=3)
        products = _catalogue(2)
        first, second = (p.images.get() for p in products)
        embedding_put(image=first, model_version=version, vector=[0, 0, 1])
        EmbeddingFailure.objects.create(image=first, model_version=version, reason="stale")
        coverage = index_coverage(model_version=version)
        self.assertEqual((coverage.total_images, coverage.embedded, coverage.failed, coverage.missing), (2, 1, 0, 1))
        self.assertFalse(coverage.complete)


class OneRecordPerImageTests(TransactionTestCase):
    def test_image_embed_beside_a_batch_leaves_one_vector_or_one_failure(self):
        version = tiny_model_version()
        serving_set(version, is_active=True)
        _catalogue(2)
        self.addCleanup(purge_queue, "embeddings")  # the job's message: this test runs the batch itself
        job = index_job_start(model_version=version)
        batch = job.batches.get()
        image = ProductImage.objects.order_by("id").first()
        batch_wrote = threading.Event()
        embed_done = threading.Event()
        errors: list[str] = []
        real_write = embeddings_write

        def write_then_wait(**kwargs):
            real_write(**kwargs)
            if threading.current_thread().name == "batch":
                batch_wrote.set()
                embed_done.wait(timeout=3)  # hold the batch's transaction open while image_embed runs

        def run_batch():
            try:
                index_batch_run(batch_id=batch.pk)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            finally:
                connection.close()

        def run_image_embed():
            try:
                batch_wrote.wait(timeout=30)
                # The file went bad after the batch read it: this run records a failure.
                with mock.patch("search.indexing.writes.images_embed", return_value=({}, {image.pk: "unreadable now"})):
                    image_embed(image_id=image.pk)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            finally:
                embed_done.set()
                connection.close()

        with (
            mock.patch("search.indexing.writes.embeddings_write", side_effect=write_then_wait),
            mock.patch("search.indexing.batches.embeddings_write", side_effect=write_then_wait),
        ):
            threads = [
                threading.Thread(target=run_batch, name="batch"),
                threading.Thread(target=run_image_embed, name="embed"),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        self.assertEqual(errors, [])
        vectors = ImageEmbedding.objects.filter(image=image, model_version=version).count()
        failures = EmbeddingFailure.objects.filter(image=image, model_version=version).count()
        self.assertEqual(vectors + failures, 1, f"{vectors} vector(s) and {failures} failure(s) for one image")


@override_settings(EMBEDDING_BATCH_SIZE=10)
class CancelDuringBuildTests(TestCase):
    def test_a_job_cancelled_while_its_index_builds_does_not_auto_activate(self):
        version = tiny_model_version(auto_activate=True)
        _catalogue(4)
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=version)
        for batch in job.batches.all():
            index_batch_run(batch_id=batch.pk)
        real_build = hnsw_index_build

        def build_then_cancel(**kwargs):
            name = real_build(**kwargs)
            index_job_cancel(job=IndexJob.objects.get(pk=job.pk))  # an admin pressed Cancel meanwhile
            return name

        with mock.patch("search.indexing.jobs.hnsw_index_build", side_effect=build_then_cancel):
            index_job_finish(job_id=job.pk)
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.CANCELLED)
        self.assertFalse(model_version_is_active(model_version=version))


class ModelCacheTests(TestCase):
    def test_the_per_process_model_cache_keeps_the_two_most_recently_used_versions(self):
        from ml import runtime

        runtime.forget()
        self.addCleanup(runtime.forget)
        a, b, c = (tiny_model_version() for _ in range(3))
        for version in (a, b, a, c):
            runtime.embedder_for(version)
        self.assertEqual(runtime.cached_versions(), [a.pk, c.pk])  # b, least recently used, was dropped


class VersionDeleteTests(TransactionTestCase):
    def setUp(self):
        from django.contrib.admin.sites import site
        from django.contrib.auth.models import User
        from django.test import RequestFactory

        self.version = tiny_model_version()
        _catalogue(3)
        index_job_run_here(index_job_start(model_version=self.version))
        self.addCleanup(purge_queue, "embeddings")
        self.admin = site._registry[ModelVersion]
        self.request = RequestFactory().post("/")
        self.request.user = User.objects.create_superuser("root", "root@example.com", "pw")

    def test_deleting_a_version_in_the_admin_does_not_block_search_and_removes_files_after_commit(self):
        from search.serving.hnsw import hnsw_index_exists

        pk, workdir = self.version.pk, self.version.workdir
        self.assertTrue(hnsw_index_exists(model_version=self.version))
        deleted, searched = threading.Event(), threading.Event()
        seen: dict[str, object] = {}

        def delete_in_a_transaction():  # as the admin's delete view does
            try:
                with transaction.atomic():
                    self.admin.delete_model(self.request, ModelVersion.objects.get(pk=pk))
                    deleted.set()
                    searched.wait(timeout=10)
                    seen["files_before_commit"] = workdir.exists()
            except Exception as exc:  # noqa: BLE001 - reported below
                seen["error"] = repr(exc)
                deleted.set()
            finally:
                connection.close()

        thread = threading.Thread(target=delete_in_a_transaction)
        thread.start()
        self.assertTrue(deleted.wait(timeout=30))
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                cursor.execute("SELECT count(*) FROM search_imageembedding")  # what a search reads
                seen["search"] = cursor.fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - a lock timeout is the failure this test is about
            seen["search"] = repr(exc)
        finally:
            searched.set()
            thread.join(timeout=30)
        self.assertNotIn("error", seen)
        self.assertIsInstance(seen["search"], int, seen["search"])
        self.assertTrue(seen["files_before_commit"])
        self.assertFalse(workdir.exists())
        self.assertFalse(hnsw_index_exists(model_version=ModelVersion(pk=pk)))

    def test_a_delete_that_rolls_back_keeps_the_files_and_the_index(self):
        from search.serving.hnsw import hnsw_index_exists

        with self.assertRaises(RuntimeError), transaction.atomic():
            self.admin.delete_model(self.request, ModelVersion.objects.get(pk=self.version.pk))
            raise RuntimeError("the delete's transaction fails")
        self.assertTrue((self.version.workdir / "embedder.keras").exists())
        self.assertTrue(hnsw_index_exists(model_version=self.version))
