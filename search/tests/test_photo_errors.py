"""Photo search's failures, page and API alike: a refused photo is a 400 with the upload gate's reason,
no usable model a 503 with a generic message and Retry-After, a bug a logged 500 with a generic page;
no exception text or file path ever reaches the visitor."""

from __future__ import annotations

from unittest import mock

from django.test import Client, TestCase
from django.urls import reverse

from catalog.images import InvalidImage
from ml.runtime import forget
from search.serving.activation import model_version_activate

from .factories import category_create, index_and_activate, model_version_create, product_create, shape_png
from .test_views import upload
from .tiny_model import tiny_model_version

SECRET = "/srv/secret-dir/ml/framing.py"  # stands in for a path or an internal detail in an exception
PAGE = reverse("search:photo_search")
API = reverse("search:api_search")


class PhotoErrorTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        category = category_create("Shapes")
        cls.products = [product_create(category=category, images=[shape_png(s)]) for s in ("square", "circle")]
        index_and_activate(cls.version)

    def setUp(self):
        self.addCleanup(forget)
        self.client = Client(raise_request_exception=False)  # a visitor sees what the handlers return

    def post(self, url: str):
        return self.client.post(url, {"image": upload(shape_png("circle"))})

    def assertNothingLeaks(self, response, *secrets: str):
        body = response.content.decode()
        for secret in (SECRET, "Traceback", *secrets):
            self.assertNotIn(secret, body)

    def assertUnavailable(self, response, *secrets: str):
        self.assertEqual(response.status_code, 503, response.content[:300])
        self.assertGreater(int(response["Retry-After"]), 0)
        self.assertNothingLeaks(response, *secrets)

    def test_a_photo_the_models_decoder_refuses_is_a_400_with_the_gates_reason(self):
        reason = "The file is not a complete image (it is cut short)."
        with mock.patch("ml.preprocess.read_image", side_effect=InvalidImage(reason)):
            api = self.post(API)
            page = self.post(PAGE)
        self.assertEqual((api.status_code, api.json()), (400, {"error": reason}))
        self.assertContains(page, reason, status_code=400)

    def test_a_missing_model_file_is_a_503_with_retry_after_and_no_path(self):
        broken = model_version_create(dim=8)  # a row whose folder holds no model
        model_version_activate(model_version=broken, force=True)
        with self.assertLogs("search.queries.photo", "ERROR") as logs:
            api, page = self.post(API), self.post(PAGE)
        for response in (api, page):
            self.assertUnavailable(response, str(broken.workdir), "embedder.keras", "file not found")
        self.assertIn("could not be loaded", api.json()["error"])
        self.assertContains(page, "could not be loaded", status_code=503)
        self.assertIn(str(broken.workdir), "\n".join(logs.output))  # the operator is told where

    def test_a_corrupt_model_file_is_a_503_with_retry_after_and_no_exception_text(self):
        forget()
        model = self.version.workdir / "embedder.keras"
        self.addCleanup(model.write_bytes, model.read_bytes())
        model.write_bytes(b"PK\x03\x04 this is not a keras archive")
        with self.assertLogs("search.queries.photo", "ERROR"):
            response = self.post(API)
        self.assertUnavailable(response, str(self.version.workdir), "BadZipFile", "keras archive")
        self.assertEqual(set(response.json()), {"error"})

    def test_a_model_that_fails_to_run_is_a_503_with_retry_after_and_no_exception_text(self):
        import tensorflow as tf

        failure = tf.errors.InternalError(None, None, f"kernel failed in {SECRET}")
        with (
            mock.patch("ml.inference.Embedder._predict", side_effect=failure),
            self.assertLogs("search.queries.photo", "ERROR"),
        ):
            api, page = self.post(API), self.post(PAGE)
        for response in (api, page):
            self.assertUnavailable(response, "kernel failed")

    def test_no_active_model_is_a_503_with_retry_after(self):
        from search.models import ServingState

        ServingState.objects.update(is_active=False)
        for response in (self.post(API), self.post(PAGE)):
            self.assertUnavailable(response)
            self.assertIn("no model is active", response.content.decode())

    def test_a_bug_is_a_logged_500_with_a_generic_page_and_generic_json(self):
        bug = TypeError(f"unsupported operand type(s) in {SECRET}")
        with mock.patch("ml.preprocess.frame", side_effect=bug), self.assertLogs("django.request", "ERROR") as logs:
            api, page = self.post(API), self.post(PAGE)
        self.assertEqual(api.status_code, 500)
        self.assertEqual(api.json(), {"error": "Something went wrong on our side. Please try again."})
        self.assertContains(page, "Something went wrong on our side", status_code=500)
        for response in (api, page):
            self.assertNothingLeaks(response, "unsupported operand", "TypeError")
        self.assertEqual(len(logs.records), 2)
        for record in logs.records:  # logged with its traceback, for the operator
            self.assertIs(record.exc_info[0], TypeError)

    def test_when_the_error_page_fails_too_the_plain_500_page_is_served(self):
        from django.template import TemplateSyntaxError

        bug = TypeError(f"unsupported operand type(s) in {SECRET}")
        with (
            mock.patch("ml.preprocess.frame", side_effect=bug),
            mock.patch("config.views.render", side_effect=TemplateSyntaxError("error.html is broken")),
            self.assertLogs("config.views", "ERROR"),
            self.assertLogs("django.request", "ERROR"),
        ):
            page = self.post(PAGE)
        self.assertContains(page, "Something went wrong on our side", status_code=500)
        self.assertNotContains(page, "site-header", status_code=500)  # the plain page, not error.html
        self.assertNothingLeaks(page, "unsupported operand", "error.html is broken")
