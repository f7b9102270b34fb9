"""One decoding contract: the same file gives the same model input and vector when indexed and when
uploaded as a photo, for the files where decoders disagree (EXIF orientation, transparency, palette,
CMYK, 16-bit)."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from PIL import Image

from catalog.images import read_image
from ml.preprocess import bytes_to_input, file_to_input
from ml.runtime import embedder_for
from search.models import ImageEmbedding

from .factories import category_create, index_and_activate, product_create, shape_image
from .tiny_model import tiny_model_version


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def tricky_files() -> dict[str, bytes]:
    """name -> bytes of five files on which decoders differ, each showing a different shape."""
    square = shape_image("square", color=(220, 40, 40), size=40)
    circle = shape_image("circle", color=(40, 200, 60), size=40)
    bar = shape_image("bar", color=(50, 80, 230), size=40)
    triangle = shape_image("triangle", color=(240, 220, 40), size=40)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: a viewer rotates it 90 degrees clockwise
    cutout = triangle.convert("RGBA")
    cutout.putalpha(Image.fromarray(((np.asarray(triangle).max(axis=-1) > 0) * 255).astype(np.uint8)))
    palette = circle.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    wide = Image.fromarray(np.asarray(bar.convert("L"), np.uint16) * 257)  # mode I;16
    return {
        "exif-rotated.jpg": _save(bar.rotate(90, expand=True), "JPEG", quality=95, exif=exif.tobytes()),
        "transparent.png": _save(cutout, "PNG"),
        "palette-transparent.png": _save(palette, "PNG", transparency=0),
        "cmyk.jpg": _save(square.convert("CMYK"), "JPEG", quality=95),
        "16-bit.png": _save(wide, "PNG"),
    }


class DecodingContractTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        category = category_create("Tricky files")
        cls.files = tricky_files()
        cls.products = {name: product_create(images=[data], category=category) for name, data in cls.files.items()}
        index_and_activate(cls.version)

    def test_each_file_is_indexed_not_failed(self):
        self.assertEqual(ImageEmbedding.objects.filter(model_version=self.version).count(), len(self.files))

    def test_index_and_search_paths_give_the_same_model_input(self):
        embedder = embedder_for(self.version)
        for name, product in self.products.items():
            with self.subTest(file=name):
                stored = product.images.get()
                indexed = file_to_input(stored.image.path, embedder.image_size, embedder.framing)
                uploaded = read_image(self.files[name], max_bytes=10 * 2**20)  # what the upload form does
                searched = bytes_to_input(uploaded.data, embedder.image_size, embedder.framing)
                np.testing.assert_array_equal(indexed, searched)
                self.assertGreater(indexed.std(), 5.0)  # an image, not a blank

    def test_each_file_uploaded_as_a_photo_finds_its_own_product_at_distance_zero(self):
        for name, product in self.products.items():
            with self.subTest(file=name):
                # The whole file (crop=none), as indexed; by default the search would crop to the item.
                data = {"image": SimpleUploadedFile(name, self.files[name]), "k": 3, "crop": "none"}
                response = self.client.post("/api/search", data)
                self.assertEqual(response.status_code, 200, response.content)
                first = response.json()["results"][0]
                self.assertEqual(first["id"], product.pk)
                self.assertLess(first["distance"], 1e-3)

    def test_exif_orientation_is_applied_before_the_model_sees_it(self):
        upright = read_image(self.files["exif-rotated.jpg"]).image
        self.assertEqual(upright.size, (40, 40))
        a = np.asarray(upright.convert("L"), np.float32)
        # The bar lies horizontally once the orientation is applied: its rows vary more than its columns.
        self.assertGreater(a.mean(axis=1).std(), a.mean(axis=0).std())

    def test_transparency_becomes_white_and_16_bit_keeps_its_levels(self):
        cutout = np.asarray(read_image(self.files["transparent.png"]).image)
        self.assertTrue((cutout[0, 0] == 255).all())
        wide = np.asarray(read_image(self.files["16-bit.png"]).image)
        self.assertGreater(wide.max(), 40)
        self.assertEqual(wide.dtype, np.uint8)
