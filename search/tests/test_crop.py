"""Cropping the query photo: parsing and checking x,y,w,h, clear 400s, and the crop changing results."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import SimpleTestCase, TestCase
from django.urls import reverse
from PIL import Image

from search.queries.crop import BadCrop, Crop, crop_check, crop_parse

from .factories import (
    COLORS,
    SHAPES,
    category_create,
    image_bytes,
    index_and_activate,
    product_create,
    shape_image,
    shape_png,
)
from .tiny_model import LABEL_NAMES, tiny_model_version

API = reverse("search:api_search")
PAGE = reverse("search:photo_search")


def two_up(left: Image.Image, right: Image.Image) -> bytes:
    """One photo with two products side by side."""
    photo = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    photo.paste(left, (0, 0))
    photo.paste(right, (left.width, 0))
    return image_bytes(photo)


def upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("photo.png", data, content_type="image/png")


class CropParseTests(SimpleTestCase):
    def test_parses_with_spaces(self):
        self.assertEqual(crop_parse(" 1, 2,30 ,40 "), Crop(1, 2, 30, 40))
        self.assertEqual(Crop(1, 2, 30, 40).box, (1, 2, 31, 42))

    def test_malformed(self):
        for raw in (
            "1,2,3",
            "1,2,3,4,5",
            "a,b,c,d",
            "-1,0,10,10",
            "1.5,0,10,10",
            "1;2;3;4",
            "9999999,0,1,1",
            "<script>",
        ):
            with self.assertRaisesMessage(BadCrop, "four whole numbers x,y,w,h"):
                crop_parse(raw)

    def test_zero_size(self):
        with self.assertRaisesMessage(BadCrop, "at least 1 pixel wide and high. Received: width 0, height 5."):
            crop_parse("0,0,0,5")

    def test_outside(self):
        crop_check(Crop(0, 0, 40, 30), width=40, height=30)
        with self.assertRaisesMessage(
            BadCrop, "reaches outside the photo, which is 40×30 pixels: it ends at x=41, y=30."
        ):
            crop_check(Crop(1, 0, 40, 30), width=40, height=30)


class CropSearchTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        categories = [category_create(name) for name in LABEL_NAMES]
        for i, shape in enumerate(SHAPES):
            for c, color in enumerate(COLORS):
                product_create(category=categories[i], images=[shape_png(shape, color=color)], title=f"{shape} {c}")
        index_and_activate(cls.version)
        cls.photo = two_up(
            shape_image("square", color=COLORS[0], size=64), shape_image("triangle", color=COLORS[1], size=64)
        )

    def titles(self, **data) -> list[str]:
        response = self.client.post(API, {"image": upload(self.photo), "k": 4, **data})
        self.assertEqual(response.status_code, 200, response.content)
        return [r["title"] for r in response.json()["results"]]

    def test_each_half_finds_its_own_product_and_differs_from_the_whole_photo(self):
        whole, left, right = self.titles(crop="none"), self.titles(crop="0,0,64,64"), self.titles(crop="64,0,64,64")
        # The tiny model is trained to tell shapes apart (its labels), not colours.
        self.assertTrue(left[0].startswith("square"), left)
        self.assertTrue(right[0].startswith("triangle"), right)
        self.assertNotEqual(left, whole)
        self.assertNotEqual(right, whole)

    def test_the_whole_photo_as_a_crop_is_the_same_as_crop_none(self):
        self.assertEqual(self.titles(crop="0,0,128,64"), self.titles(crop="none"))

    def test_page_shows_the_boxed_part(self):
        response = self.client.post(PAGE, {"image": upload(self.photo), "crop": "64,0,64,64"})
        self.assertContains(response, "the boxed part, 64×64 px")
        self.assertContains(response, '<input type="hidden" name="crop" value="">')  # the next photo starts whole
        self.assertTrue(response.context["result"].items[0].product.title.startswith("triangle"))

    def test_bad_crops_are_json_400s_that_say_what_is_wrong(self):
        cases = {
            "10,10,0,20": "Crop: The crop must be at least 1 pixel wide and high. Received: width 0, height 20.",
            "100,0,64,64": "Crop: The crop 100,0,64,64 (x,y,w,h) reaches outside the photo, which is 128×64 pixels: it ends at x=164, y=64.",
            "0,0,10": "Crop: Give the crop as four whole numbers x,y,w,h in pixels of the photo, like 10,20,200,150. Received: '0,0,10'",
            "x" * 500: "Crop: Ensure this value has at most 100 characters (it has 500).",
            "0,0,1\x00,1": "Crop: Null characters are not allowed.",
        }
        for crop, message in cases.items():
            response = self.client.post(API, {"image": upload(self.photo), "crop": crop})
            self.assertEqual((response.status_code, response.json()), (400, {"error": message}), crop)

    def test_bad_crop_on_the_page_is_a_400_with_the_message(self):
        response = self.client.post(PAGE, {"image": upload(self.photo), "crop": "0,0,999,999"})
        self.assertContains(response, "reaches outside the photo", status_code=400)
