"""What becomes an image's EmbeddingFailure: only its own file failing to read or decode. Anything
else in the model call (a bug in framing, MemoryError) fails the batch: the task retries, then the
job fails and says why, nothing is recorded against the images, and coverage stays incomplete."""

from __future__ import annotations

from unittest import mock

from django.test import TestCase

from ml.runtime import embedder_for
from search import tasks
from search.indexing.jobs import index_job_start
from search.indexing.progress import index_coverage
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob

from .factories import product_create, shape_png
from .tiny_model import tiny_model_version

# Larger than the tiny model's 16-px input: each file goes through decoding and framing in Python
# (a file the model's own size would be decoded inside the TensorFlow graph instead).
SIZE = 24


def framing_bug(*args, **kwargs):
    raise RuntimeError("a bug in framing")


def out_of_memory(*args, **kwargs):
    raise MemoryError()


class BatchErrorTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        cls.products = [product_create(images=[shape_png(shape, size=SIZE)]) for shape in ("square", "circle", "bar")]

    def run_job(self) -> IndexJob:
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=self.version)
        for batch in job.batches.all():
            tasks.index_batch_task.apply(args=[batch.pk])  # retried, then the job fails
        tasks.index_job_finish_task.apply(args=[job.pk])
        job.refresh_from_db()
        return job

    def assertBatchFailed(self, job: IndexJob, reason: str):
        self.assertEqual(job.status, IndexJob.Status.FAILED)
        self.assertIn(reason, job.error)
        self.assertFalse(EmbeddingFailure.objects.filter(model_version=self.version).exists())
        self.assertFalse(ImageEmbedding.objects.filter(model_version=self.version).exists())
        coverage = index_coverage(model_version=self.version)
        self.assertEqual((coverage.missing, coverage.complete), (3, False))

    def test_a_bug_in_framing_fails_the_batch_not_the_images(self):
        with mock.patch("ml.preprocess.frame", framing_bug):
            job = self.run_job()
        self.assertBatchFailed(job, "a bug in framing")

    def test_memory_error_while_decoding_fails_the_batch_not_the_images(self):
        with mock.patch("ml.preprocess.read_image", out_of_memory):
            job = self.run_job()
        self.assertBatchFailed(job, "MemoryError")

    def test_the_batch_is_retried_before_the_job_fails(self):
        calls = []

        def counted(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("a bug in framing")

        with mock.patch("ml.preprocess.frame", counted):
            self.run_job()
        self.assertGreater(len(calls), 3)  # each of the three images, more than once

    def test_a_damaged_file_is_still_its_own_failure(self):
        bad = self.products[1].images.get()
        with open(bad.image.path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n this is not really a png")
        job = self.run_job()
        self.assertEqual((job.status, job.done, job.failed), (IndexJob.Status.DONE, 2, 1), job.error)
        self.assertEqual(EmbeddingFailure.objects.get(model_version=self.version).image_id, bad.pk)


class EmbedderErrorTests(TestCase):
    def test_embed_files_raises_what_is_not_a_fault_of_the_file(self):
        version = tiny_model_version()
        product = product_create(images=[shape_png(size=SIZE)])
        embedder = embedder_for(version)
        path = product.images.get().image.path
        with mock.patch("ml.preprocess.frame", framing_bug), self.assertRaisesMessage(RuntimeError, "a bug in framing"):
            embedder.embed_files([path])
        vectors, failures = embedder.embed_files([path, "/nonexistent/file.png"])
        self.assertEqual(list(failures), [1])  # a missing file is that file's failure
        self.assertIn("No such file", failures[1])
