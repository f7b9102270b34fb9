"""Model files going bad: reindexing with a missing or corrupt model fails clearly, and the active
version keeps serving whatever happens to its files after it was loaded."""

from __future__ import annotations

from django.test import TestCase
from django.urls import reverse

from ml.models import ModelVersion
from ml.runtime import forget
from search import tasks
from search.indexing.jobs import index_job_start
from search.models import IndexJob
from search.queries.similar import SimilarItems, product_similar
from search.serving.activation import ActivationRefused, model_version_activate
from search.serving.versions import model_version_is_active

from .factories import COLORS, SHAPES, index_and_activate, product_create, shape_png
from .tiny_model import tiny_model_version


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
        self.assertEqual(
            self.client.get(reverse("search:api_product_similar", args=[self.products[0].pk])).status_code, 200
        )
        self.assertTrue(model_version_is_active(model_version=self.active))


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("p.png", data, content_type="image/png")
