"""Hostile uploads through the admin, how stored images are named and served, and bad catalogue
data on disk (missing, corrupt, duplicate, or in formats TensorFlow cannot decode) during import
and indexing."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from PIL import Image

from catalog.images import read_image
from catalog.models import Category, Product, ProductImage
from ml.runtime import embedder_for
from search.indexing.jobs import index_job_start
from search.models import EmbeddingFailure, ImageEmbedding, IndexJob
from search.tests.factories import image_bytes, index_job_run_here, product_create, shape_image, shape_png
from catalog.tests.factories import PrivateMediaRootMixin
from search.tests.tiny_model import tiny_model_version

STORED_NAME = re.compile(r"^products/[0-9a-f]{2}/[0-9a-f]{32}\.(png|jpg|jpeg|webp|gif)$")


def media_files() -> set[str]:
    root = settings.MEDIA_ROOT
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files} if os.path.isdir(root) else set()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


class AdminImageUploadTests(PrivateMediaRootMixin, TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.admin = User.objects.create_superuser("root", "root@example.com", "pw")
        cls.category = Category.objects.create(name="Tops", slug="tops")

    def setUp(self):
        self.client.force_login(self.admin)

    def add_product(self, data: bytes, name: str, content_type: str = "image/png", sku: str = "H-1"):
        form = {
            "sku": sku,
            "title": "Hostile",
            "category": self.category.pk,
            "price": "1.00",
            "description": "",
            "images-TOTAL_FORMS": "1",
            "images-INITIAL_FORMS": "0",
            "images-MIN_NUM_FORMS": "0",
            "images-MAX_NUM_FORMS": "1000",
            "images-0-position": "0",
            "images-0-image": SimpleUploadedFile(name, data, content_type=content_type),
        }
        return self.client.post(reverse("admin:catalog_product_add"), form)

    def assertRefused(self, data: bytes, name: str, reasons: str | tuple[str, ...], content_type: str = "image/png"):
        before = media_files()
        response = self.add_product(data, name, content_type)
        # The admin re-renders the form with the reason next to the field (its usual 200), saving nothing.
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "errornote")
        reasons = (reasons,) if isinstance(reasons, str) else reasons
        self.assertTrue(any(r in response.content.decode() for r in reasons), reasons)
        self.assertFalse(Product.objects.exists())
        self.assertFalse(ProductImage.objects.exists())
        self.assertEqual(media_files(), before)

    def test_hostile_bytes_are_refused_with_a_reason(self):
        jpeg = image_bytes(Image.frombytes("RGB", (48, 48), os.urandom(48 * 48 * 3)), "JPEG")
        side_warn = int((1.5 * Image.MAX_IMAGE_PIXELS) ** 0.5)
        side_bomb = int((2.5 * Image.MAX_IMAGE_PIXELS) ** 0.5)
        cases = [
            (b"plain text, not a photo\n" * 10, "photo.jpg", "image/jpeg", "Upload a valid image"),
            (b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script>", "photo.png", "image/png", "Upload a valid image"),
            (b"", "photo.png", "image/png", "The submitted file is empty"),
            (jpeg[: len(jpeg) // 2], "photo.jpg", "image/jpeg", "damaged or incomplete"),
            # Django's own ImageField check or read_image's pixel limit refuses these, whichever is first.
            (png_claiming(side_warn, side_warn), "warn.png", "image/png", ("too many pixels", "Upload a valid image")),
            (png_claiming(side_bomb, side_bomb), "bomb.png", "image/png", ("too many pixels", "Upload a valid image")),
            (b"<?php echo 1; ?>", "shell.jpg.php", "image/png", "Upload a valid image"),
        ]
        for data, name, content_type, reason in cases:
            with self.subTest(name=name, reason=reason):
                self.assertRefused(data, name, reason, content_type)

    def test_file_over_the_size_limit_is_refused(self):
        with self.settings(SEARCH_UPLOAD_MAX_BYTES=20_000):
            data = image_bytes(Image.frombytes("RGB", (100, 100), os.urandom(30_000)))
            self.assertRefused(data, "big.png", "the limit is")

    def test_stored_names_are_generated_whatever_the_uploaded_name(self):
        names = [
            "../../../etc/passwd.png",
            "UPPER.PNG",
            "photo.jpg",
            "a\x00b.png",
            "line\nbreak.png",
            "sp ace;rm -rf.png",
        ]
        for i, name in enumerate(names):
            with self.subTest(name=name):
                response = self.add_product(shape_png(), name, sku=f"N-{i}")
                self.assertEqual(response.status_code, 302)
                image = ProductImage.objects.get(product__sku=f"N-{i}")
                self.assertRegex(image.image.name, STORED_NAME)
                self.assertTrue(image.image.name.endswith(".png"), "the suffix follows the bytes (PNG), not the name")
                self.assertTrue(Path(image.image.path).resolve().is_relative_to(Path(settings.MEDIA_ROOT).resolve()))
                self.assertEqual(image.sha256, read_image(shape_png()).sha256)
                self.assertEqual((image.width, image.height), (16, 16))

    def test_unusable_upload_names_are_refused_with_a_reason(self):
        # Django's extension and length checks: clear to the admin, and nothing is stored.
        self.assertRefused(shape_png(), "photo.jpg.php", "File extension “php” is not allowed")
        self.assertRefused(shape_png(), "photo.txt", "File extension “txt” is not allowed")
        self.assertRefused(shape_png(), "x" * 300 + ".png", "at most 100 characters")

    def test_media_is_served_with_nosniff(self):
        self.add_product(shape_png(), "photo.png")
        image = ProductImage.objects.get()
        response = self.client.get(image.image.url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["X-Content-Type-Options"], "nosniff")
        self.assertEqual(response["Content-Type"], "image/png")
        self.assertIn("default-src 'none'", response["Content-Security-Policy"])
        self.assertIn(self.client.get("/media/../config/settings.py").status_code, (400, 404))


class DuplicateImportTests(TestCase):
    def test_same_bytes_under_different_names_are_reported_as_duplicates(self):
        folder = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, folder)
        (folder / "a.png").write_bytes(shape_png("circle"))
        (folder / "copy-of-a.png").write_bytes(shape_png("circle"))
        (folder / "b.png").write_bytes(shape_png("square"))
        csv_path = folder / "products.csv"
        csv_path.write_text(
            "sku,title,category,price,description,images\nD1,One,Tops,1,,a.png\nD2,Two,Tops,1,,copy-of-a.png\nD3,Three,Tops,1,,b.png\n"
        )
        out = io.StringIO()
        call_command("import_catalog", str(csv_path), images=str(folder), stdout=out, stderr=io.StringIO(), verbosity=0)
        self.assertIn("D2 has the same image as D1", out.getvalue())
        self.assertNotIn("D3 has the same image", out.getvalue())
        self.assertEqual(Product.objects.count(), 3)


class BadCatalogueDataIndexingTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()

    def image_create(self, data: bytes, name: str) -> ProductImage:
        product = product_create(images=[])
        image = ProductImage(product=product, position=0)
        image.image.save(name, ContentFile(data), save=False)
        image.save()
        return image

    def reindex(self) -> IndexJob:
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=self.version)
        return index_job_run_here(job)

    def test_missing_and_corrupt_files_fail_with_reasons_and_odd_formats_embed(self):
        good = [self.image_create(shape_png(s), "g.png") for s in ("square", "circle")]
        webp_source = shape_image("triangle", color=(40, 200, 60), size=16)
        webp = self.image_create(image_bytes(webp_source, "WEBP", lossless=True), "t.webp")
        cmyk = self.image_create(image_bytes(shape_image("bar").convert("CMYK"), "JPEG", quality=95), "c.jpg")
        deep = Image.new("I;16", (16, 16), 0)
        deep.paste(60000, (4, 4, 12, 12))
        sixteen = self.image_create(image_bytes(deep, "PNG"), "d.png")
        palette = self.image_create(image_bytes(shape_image("circle").convert("P"), "GIF"), "p.gif")
        missing = self.image_create(shape_png(), "m.png")
        os.remove(missing.image.path)
        corrupt = self.image_create(shape_png(), "x.png")
        Path(corrupt.image.path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
        truncated = self.image_create(shape_png(size=48), "y.png")
        Path(truncated.image.path).write_bytes(shape_png(size=48)[:60])

        job = self.reindex()

        self.assertEqual((job.status, job.total, job.done, job.failed), (IndexJob.Status.DONE, 9, 6, 3))
        embedded = set(ImageEmbedding.objects.filter(model_version=self.version).values_list("image_id", flat=True))
        self.assertEqual(embedded, {good[0].pk, good[1].pk, webp.pk, cmyk.pk, sixteen.pk, palette.pk})
        reasons = dict(EmbeddingFailure.objects.filter(model_version=self.version).values_list("image_id", "reason"))
        self.assertEqual(set(reasons), {missing.pk, corrupt.pk, truncated.pk})
        self.assertIn("No such file", reasons[missing.pk])
        self.assertTrue(reasons[corrupt.pk] and reasons[truncated.pk])
        # The PIL fallback gives the numbers the photo-search path (also PIL) gives for the same image.
        embedder = embedder_for(self.version)
        stored = ImageEmbedding.objects.get(image=webp, model_version=self.version).vector
        # Within float16's rounding (halfvec storage, the default): 2^-11 of a unit vector's values.
        np.testing.assert_allclose(stored, embedder.embed_pil(webp_source), atol=1e-3)

    def test_a_file_repaired_on_disk_is_embedded_by_the_next_reindex(self):
        image = self.image_create(shape_png(), "r.png")
        Path(image.image.path).write_bytes(b"garbage")
        self.assertEqual(self.reindex().failed, 1)
        Path(image.image.path).write_bytes(shape_png())
        job = self.reindex()
        self.assertEqual((job.done, job.failed), (1, 0))
        self.assertFalse(EmbeddingFailure.objects.exists())
        self.assertTrue(ImageEmbedding.objects.filter(image=image).exists())
