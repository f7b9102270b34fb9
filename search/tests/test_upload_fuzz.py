"""Every upload path (photo search page and API, the admin's product image) answers a clear 4xx to
odd input, never a 500, with a model active and without one."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.urls import reverse

from catalog.models import Category

from .factories import index_and_activate, product_create, shape_png
from .tiny_model import tiny_model_version

GOOD = shape_png("circle", size=20)


def odd_inputs() -> list[tuple[str, dict]]:
    png = lambda name="p.png": SimpleUploadedFile(name, GOOD, content_type="image/png")  # noqa: E731
    return [
        ("no image", {"k": "3"}),
        ("image as a text field", {"image": "not a file"}),
        ("empty file", {"image": SimpleUploadedFile("e.png", b"", content_type="image/png")}),
        ("text as image", {"image": SimpleUploadedFile("t.png", b"hello", content_type="image/png")}),
        ("NUL in category", {"image": png(), "category": "a\x00b"}),
        ("control in category", {"image": png(), "category": "\x01\x7f"}),
        ("unknown category", {"image": png(), "category": "no-such-category"}),
        ("NUL in k", {"image": png(), "k": "3\x00"}),
        ("huge k", {"image": png(), "k": "1" * 400}),
        ("negative k", {"image": png(), "k": "-4"}),
        ("float k", {"image": png(), "k": "2.5"}),
        ("exponent k", {"image": png(), "k": "1e9"}),
        ("NUL in filename", {"image": png("a\x00b.png")}),
        ("very long filename", {"image": png("x" * 5000 + ".png")}),
        ("two images", {"image": [png(), png()]}),
        ("truncated png", {"image": SimpleUploadedFile("t.png", GOOD[:30], content_type="image/png")}),
        ("NUL in an extra field", {"image": png(), "extra\x00": "\x00"}),
    ]


class UploadFuzzTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.product = product_create(images=[shape_png()])
        Category.objects.get_or_create(name="Shapes", slug="shapes")
        cls.user = User.objects.create_superuser("root", "root@example.com", "pw")

    def setUp(self):
        logging.disable(logging.ERROR)  # 4xx log lines
        self.addCleanup(logging.disable, logging.NOTSET)

    def check_every_path(self, *, model_active: bool):
        for name, data in odd_inputs():
            for url in (reverse("search:photo_search"), reverse("search:api_search")):
                with self.subTest(input=name, url=url):
                    response = self.client.post(url, data)
                    if response.status_code == 503:  # a photo that is fine, and nothing to search with yet
                        self.assertFalse(model_active)
                        self.assertIn(b"no model is active", response.content)
                    else:
                        self.assertTrue(
                            response.status_code == 200 or 400 <= response.status_code < 500, response.status_code
                        )
            with self.subTest(input=name, url="admin product image"):
                self.client.force_login(self.user)
                image = data.get("image")
                response = self.client.post(
                    reverse("admin:catalog_product_change", args=[self.product.pk]),
                    {
                        "sku": self.product.sku,
                        "title": data.get("category", "T") or "T",
                        "category": self.product.category_id,
                        "price": data.get("k", "1"),
                        "description": "",
                        "images-TOTAL_FORMS": "1",
                        "images-INITIAL_FORMS": "0",
                        "images-MIN_NUM_FORMS": "0",
                        "images-MAX_NUM_FORMS": "1000",
                        "images-0-image": image if image is not None else "",
                        "images-0-position": data.get("k", "0"),
                        "images-0-product": self.product.pk,
                    },
                )
                self.assertLess(response.status_code, 500)
                self.client.logout()

    def test_odd_uploads_are_never_a_500_without_an_active_model(self):
        self.check_every_path(model_active=False)

    def test_odd_uploads_are_never_a_500_with_a_model_active(self):
        index_and_activate(tiny_model_version())
        self.check_every_path(model_active=True)
