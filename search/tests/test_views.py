"""The photo-search page, the JSON API and the similar-items section, with a real tiny model."""

from __future__ import annotations

import base64
import io

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, TestCase, override_settings
from django.urls import reverse
from PIL import Image

from catalog.models import Product, ProductImage
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob, ServingState
from search.serving.activation import model_version_activate

from .factories import (
    COLORS,
    SHAPES,
    category_create,
    image_bytes,
    index_and_activate,
    model_version_create,
    product_create,
    shape_image,
    shape_png,
)
from .tiny_model import LABEL_NAMES, tiny_model_version


def upload(data: bytes, name: str = "photo.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


class SearchTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        cls.shapes = category_create("Shapes")
        cls.others = category_create("Others")
        cls.products = [
            product_create(images=[shape_png(s, color=c)], category=cls.shapes if i % 2 else cls.others)
            for i, (s, c) in enumerate((s, c) for s in SHAPES for c in COLORS[:2])
        ]
        index_and_activate(cls.version)  # setUpTestData: on_commit never fires, so index here

    def counts(self):
        return (
            Product.objects.count(),
            ProductImage.objects.count(),
            ImageEmbedding.objects.count(),
            EmbeddingFailure.objects.count(),
            IndexJob.objects.count(),
        )


class PhotoSearchPageTests(SearchTestCase):
    url = reverse("search:photo_search")

    def test_form_page(self):
        response = self.client.get(self.url)
        self.assertContains(response, 'enctype="multipart/form-data"')
        self.assertContains(response, "csrfmiddlewaretoken")

    def test_good_photo_shows_thumbnail_guess_and_results_and_writes_nothing(self):
        before = self.counts()
        response = self.client.post(self.url, {"image": upload(shape_png("circle", size=40)), "k": 3})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.context["result"].items), 3)
        self.assertContains(response, 'src="data:image/png;base64,')
        guess = response.context["result"].guess
        self.assertIn(guess.label, LABEL_NAMES)  # the tiny model is a classifier: it has a head
        self.assertContains(response, "Looks like")
        self.assertEqual(self.counts(), before)

    def test_category_filter(self):
        response = self.client.post(self.url, {"image": upload(shape_png()), "category": self.shapes.slug, "k": 10})
        items = response.context["result"].items
        self.assertEqual(len(items), 4)
        self.assertTrue(all(i.product.category == self.shapes for i in items))

    def test_jpeg_exif_orientation_is_applied(self):
        img = Image.new("RGB", (80, 40), (200, 10, 10))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° when shown
        data = image_bytes(img, "JPEG", exif=exif.tobytes())
        response = self.client.post(self.url, {"image": upload(data, "p.jpg", "image/jpeg")})
        self.assertEqual(response.status_code, 200)
        uri = response.context["thumbnail"]
        thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        self.assertEqual(thumb.size, (40, 80))

    def test_webp_and_gif_are_accepted(self):
        for fmt in ("WEBP", "GIF"):
            data = image_bytes(shape_image("bar", size=20), fmt)
            response = self.client.post(self.url, {"image": upload(data, f"p.{fmt.lower()}", f"image/{fmt.lower()}")})
            self.assertEqual(response.status_code, 200, fmt)

    def assertBadRequest(self, data, message):
        before = self.counts()
        response = self.client.post(self.url, data)
        self.assertContains(response, message, status_code=400)
        self.assertEqual(self.counts(), before)

    def test_non_image_is_refused(self):
        self.assertBadRequest({"image": upload(b"%PDF-1.4 not an image", "x.pdf", "application/pdf")}, "not an image")

    @override_settings(SEARCH_UPLOAD_MAX_BYTES=1000)
    def test_oversize_file_is_refused(self):
        self.assertBadRequest({"image": upload(b"\x89PNG" + b"0" * 2000)}, "the limit is")

    def test_empty_upload_is_refused(self):
        self.assertBadRequest({"image": upload(b"")}, "The file is empty.")

    def test_missing_field_is_refused(self):
        self.assertBadRequest({"k": 3}, "Choose a photo to search with.")

    def test_bmp_is_refused(self):
        self.assertBadRequest(
            {"image": upload(image_bytes(shape_image(), "BMP"), "x.bmp", "image/bmp")}, "not accepted"
        )

    def test_csrf_is_required(self):
        client = Client(enforce_csrf_checks=True)
        response = client.post(self.url, {"image": upload(shape_png())})
        self.assertEqual(response.status_code, 403)

    def test_no_active_model_is_a_503_message(self):
        ServingState.objects.update(is_active=False)
        self.assertContains(self.client.get(self.url), "no model is active")
        response = self.client.post(self.url, {"image": upload(shape_png())})
        self.assertContains(response, "no model is active", status_code=503)

    def test_model_that_fails_to_load_is_a_503_message(self):
        broken = model_version_create(dim=8)
        model_version_activate(model_version=broken, force=True)
        response = self.client.post(self.url, {"image": upload(shape_png())})
        self.assertContains(response, "could not be loaded", status_code=503)


class ApiTests(SearchTestCase):
    def test_product_similar(self):
        product = self.products[0]
        response = self.client.get(reverse("search:api_product_similar", args=[product.pk]), {"k": 3})
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual((body["state"], body["model_version"], len(body["results"])), ("ready", self.version.pk, 3))
        first = body["results"][0]
        self.assertEqual(set(first), {"id", "title", "url", "image_url", "distance"})
        self.assertNotIn(product.pk, [r["id"] for r in body["results"]])
        self.assertTrue(first["url"].startswith("http://testserver/products/"))
        distances = [r["distance"] for r in body["results"]]
        self.assertEqual(distances, sorted(distances))

    def test_product_similar_errors(self):
        url = reverse("search:api_product_similar", args=[self.products[0].pk])
        self.assertEqual(self.client.get(reverse("search:api_product_similar", args=[999999])).status_code, 404)
        self.assertIn("error", self.client.get(reverse("search:api_product_similar", args=[999999])).json())
        for k in ("0", "101", "abc", "-1"):
            response = self.client.get(url, {"k": k})
            self.assertEqual(response.status_code, 400, k)
            self.assertIn("k must be", response.json()["error"])

    def test_product_similar_without_active_model_is_503(self):
        ServingState.objects.update(is_active=False)
        response = self.client.get(reverse("search:api_product_similar", args=[self.products[0].pk]))
        self.assertEqual(response.status_code, 503)
        self.assertIn("no model is active", response.json()["error"])

    def test_search(self):
        response = Client(enforce_csrf_checks=True).post(
            reverse("search:api_search"),
            {"image": upload(shape_png("triangle")), "k": "2", "category": self.shapes.slug},
        )
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(len(body["results"]), 2)
        self.assertIn(body["category_guess"]["label"], LABEL_NAMES)

    def assertApiError(self, data, status, message):
        before = self.counts()
        response = self.client.post(reverse("search:api_search"), data)
        self.assertEqual(response.status_code, status)
        self.assertIn(message, response.json()["error"])
        self.assertEqual(self.counts(), before)

    def test_search_errors(self):
        self.assertApiError({"image": upload(b"hello", "x.txt", "text/plain")}, 400, "not an image")
        self.assertApiError({"image": upload(b"")}, 400, "empty")
        self.assertApiError({}, 400, "Choose a photo")
        self.assertApiError({"image": upload(shape_png()), "k": "1000"}, 400, "k must be")
        self.assertApiError({"image": upload(shape_png()), "category": "nope"}, 400, "no category “nope”")
        with override_settings(SEARCH_UPLOAD_MAX_BYTES=100):
            self.assertApiError({"image": upload(shape_png(size=64))}, 400, "the limit is")

    def test_search_needs_post(self):
        response = self.client.get(reverse("search:api_search"))
        self.assertEqual(response.status_code, 405)
        self.assertIn("error", response.json())

    def test_search_without_active_model_is_503(self):
        ServingState.objects.update(is_active=False)
        self.assertApiError({"image": upload(shape_png())}, 503, "no model is active")


class ProductPageTests(SearchTestCase):
    def test_similar_section_lists_other_products_and_the_toggle(self):
        product = self.products[0]
        response = self.client.get(product.get_absolute_url())
        self.assertContains(response, "Similar items")
        self.assertContains(response, 'href="?same_category=1"')
        self.assertEqual(len(response.context["similar"].items), 7)
        response = self.client.get(product.get_absolute_url(), {"same_category": "1"})
        self.assertEqual(len(response.context["similar"].items), 3)
        self.assertContains(response, "all categories")

    def test_not_indexed_product_shows_progress(self):
        fresh = product_create()
        IndexJob.objects.create(model_version=self.version, status=IndexJob.Status.RUNNING, total=60000, done=12000)
        self.assertContains(self.client.get(fresh.get_absolute_url()), "indexed 12,000 of 60,000")

    def test_no_model(self):
        ServingState.objects.update(is_active=False)
        self.assertContains(self.client.get(self.products[0].get_absolute_url()), "once a model has been trained")


class AdminTests(SearchTestCase):
    def test_index_job_list_and_status_endpoint(self):
        admin = get_user_model().objects.create_superuser("admin", "a@example.com", "pw")
        self.client.force_login(admin)
        job = IndexJob.objects.get()
        response = self.client.get(reverse("admin:search_indexjob_changelist"))
        self.assertContains(response, "<progress")
        self.assertContains(response, "index_job_progress.js")
        status = self.client.get(reverse("admin:search_indexjob_status", args=[job.pk])).json()
        self.assertEqual((status["done"], status["total"], status["percent"], status["finished"]), (8, 8, 100.0, True))
        self.assertEqual(self.client.get(reverse("admin:search_indexjob_change", args=[job.pk])).status_code, 200)

    def test_status_endpoint_needs_staff(self):
        job = IndexJob.objects.get()
        response = self.client.get(reverse("admin:search_indexjob_status", args=[job.pk]))
        self.assertEqual(response.status_code, 302)
