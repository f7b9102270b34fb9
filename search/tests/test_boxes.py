"""Photo search finds the item: crop=auto (the default), crop=none and crop=x,y,w,h; the boxes, box and
notice in the API; the 400s; the search page's box choices. On the real services and the tiny model."""

from __future__ import annotations

import base64
import io
import types
from unittest import mock

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import reverse
from PIL import Image

from ml.models import ModelVersion
from ml.proposals import Box
from ml.tests.test_proposals import _module
from catalog.images import read_image
from search.queries.boxes import AUTO, NO_ITEM, NO_PROPOSALS, NONE, crop_choice_parse, photo_boxes
from search.queries.crop import BadCrop, Crop

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
from .test_crop import two_up
from .tiny_model import LABEL_NAMES, tiny_model_version

API = reverse("search:api_search")
PAGE = reverse("search:photo_search")
KEYS = {"model_version", "query", "match", "category_guess", "results", "boxes", "box", "notice"}


def upload(data: bytes, name: str = "photo.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def wall(size=(96, 64), colour=(120, 110, 100)) -> bytes:
    """A photo of nothing: a plain wall."""
    return image_bytes(Image.new("RGB", size, colour))


class CropChoiceParseTests(SimpleTestCase):
    def test_auto_none_and_coordinates(self):
        for raw in (None, "", "  ", "auto", " AUTO "):
            self.assertEqual(crop_choice_parse(raw), AUTO, raw)
        self.assertEqual(crop_choice_parse("None"), NONE)
        self.assertEqual(crop_choice_parse("1,2,3,4"), Crop(1, 2, 3, 4))

    def test_auto_or_none_with_coordinates_says_so(self):
        for raw in ("auto,1,2,3,4", "auto 1,2,3,4", "none,0,0,10,10", "AUTO:1,2,3,4"):
            mode = raw[:4].lower()
            with self.assertRaisesMessage(
                BadCrop, f"crop={mode} cannot go with coordinates: give crop=auto, crop=none or crop=x,y,w,h alone."
            ):
                crop_choice_parse(raw)

    def test_other_words_get_the_usual_message(self):
        with self.assertRaisesMessage(BadCrop, "Give the crop as four whole numbers x,y,w,h"):
            crop_choice_parse("automatic")


# Many searches a minute: not counted against the per-client limit (config.ratelimit has its own tests).
NO_RATE_LIMIT = override_settings(SEARCH_RATE_LIMIT="")


@NO_RATE_LIMIT
class PlainBackgroundTests(SimpleTestCase):
    """For a model that frames (version None counts as one), one item on a plain background goes in whole:
    framing crops to it as it did the catalogue's photos. Several items: the best one is cropped."""

    def test_one_item_on_a_plain_background_is_searched_whole_with_its_box(self):
        info = read_image(shape_png("circle", color=COLORS[2], size=64), max_bytes=10**6)
        boxed = photo_boxes(info, AUTO, version=None)
        self.assertEqual(len(boxed.boxes), 1)
        self.assertIs(boxed.image, info)
        best = boxed.boxes[0]
        self.assertEqual(boxed.box, Crop(best.x, best.y, best.w, best.h))
        self.assertEqual((boxed.chosen, boxed.notice), (0, None))

    def test_two_items_crop_to_the_best(self):
        photo = two_up(
            shape_image("square", color=COLORS[0], size=64), shape_image("triangle", color=COLORS[1], size=64)
        )
        info = read_image(photo, max_bytes=10**6)
        boxed = photo_boxes(info, AUTO, version=None)
        self.assertEqual(len(boxed.boxes), 2)
        self.assertEqual((boxed.image.width, boxed.image.height), (boxed.box.w, boxed.box.h))
        self.assertLess(boxed.image.width, info.width)

    def test_one_item_on_a_textured_surface_is_cropped_not_searched_whole(self):
        # Wood-like stripes: framing's box on the whole photo would reach past the item (or be the photo).
        stripes = (120 + 60 * np.sin(np.arange(160) / 2.0))[None, :, None] * np.array([1.0, 0.8, 0.6])
        photo = np.repeat(stripes, 120, axis=0).astype(np.uint8)
        photo[40:80, 60:100] = (200, 30, 30)
        info = read_image(image_bytes(Image.fromarray(photo)), max_bytes=10**6)
        with mock.patch("search.queries.boxes.propose_boxes", return_value=[Box(56, 36, 48, 48, 0.9)]):
            boxed = photo_boxes(info, AUTO, version=None)
        self.assertEqual(boxed.box, Crop(56, 36, 48, 48))
        self.assertEqual((boxed.image.width, boxed.image.height), (48, 48))


class BoxesSearchTests(TestCase):
    """A red square beside a green triangle, on black: two items, the square (solid) first."""

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

    def search(self, photo: bytes | None = None, status: int = 200, **data) -> dict:
        response = self.client.post(API, {"image": upload(photo or self.photo), "k": 4, **data})
        self.assertEqual(response.status_code, status, response.content)
        return response.json()

    @staticmethod
    def titles(body: dict) -> list[str]:
        return [r["title"] for r in body["results"]]

    def test_by_default_the_best_box_is_searched_and_every_box_reported(self):
        body = self.search()
        self.assertEqual(set(body), KEYS)
        boxes = body["boxes"]
        self.assertEqual(len(boxes), 2, boxes)
        self.assertEqual(set(boxes[0]), {"x", "y", "w", "h", "score"})
        self.assertGreater(boxes[0]["score"], boxes[1]["score"])
        left, right = boxes
        self.assertLess(left["x"] + left["w"], 64)  # the square, in the left half
        self.assertGreaterEqual(right["x"], 64)  # the triangle, in the right half
        self.assertEqual(body["box"], {k: left[k] for k in "xywh"})
        self.assertIsNone(body["notice"])
        self.assertTrue(self.titles(body)[0].startswith("square"), self.titles(body))
        # The same results as that box sent as the crop, and as crop=auto spelt out.
        self.assertEqual(self.titles(body), self.titles(self.search(crop="{x},{y},{w},{h}".format(**left))))
        self.assertEqual(body, self.search(crop="auto"))

    def test_crop_none_searches_the_whole_photo_and_still_reports_the_boxes(self):
        body = self.search(crop="none")
        self.assertIsNone(body["box"])
        self.assertIsNone(body["notice"])
        self.assertEqual(len(body["boxes"]), 2)
        self.assertEqual(self.titles(body), self.titles(self.search(crop="0,0,128,64")))
        self.assertNotEqual(self.titles(body), self.titles(self.search()))

    def test_an_explicit_crop_is_the_box(self):
        body = self.search(crop="64,0,64,64")
        self.assertEqual(body["box"], {"x": 64, "y": 0, "w": 64, "h": 64})
        self.assertIsNone(body["notice"])
        self.assertTrue(self.titles(body)[0].startswith("triangle"), self.titles(body))

    def test_a_photo_of_nothing_searches_the_whole_photo_and_says_so(self):
        body = self.search(wall())
        self.assertEqual((body["boxes"], body["box"], body["notice"]), ([], None, NO_ITEM))
        self.assertEqual(len(body["results"]), 4)
        self.assertEqual(self.titles(body), self.titles(self.search(wall(), crop="none")))
        self.assertIsNone(self.search(wall(), crop="none")["notice"])  # the whole photo was asked for

    def test_a_catalogue_photo_finds_its_shape_and_with_crop_none_itself_at_distance_zero(self):
        photo = shape_png("circle", color=COLORS[2])
        body = self.search(photo)
        self.assertEqual(len(body["boxes"]), 1)
        self.assertTrue(self.titles(body)[0].startswith("circle"), self.titles(body))
        first = self.search(photo, crop="none")["results"][0]
        self.assertEqual((first["title"], first["distance"] < 1e-3), ("circle 2", True))

    def test_boxes_are_in_pixels_of_the_photo_as_shown(self):
        # Stored turned, with EXIF orientation 6: shown, it is 64 wide and 128 high, the square on top.
        shown = Image.new("RGB", (64, 128))
        shown.paste(shape_image("square", color=COLORS[0], size=64), (0, 0))
        exif = Image.Exif()
        exif[0x0112] = 6
        buffer = io.BytesIO()
        shown.transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
        [box] = self.search(buffer.getvalue())["boxes"]
        self.assertLessEqual(box["x"] + box["w"], 64)
        self.assertLessEqual(box["y"] + box["h"], 64)
        self.assertGreater(box["w"] * box["h"], 30 * 30)

    def test_auto_beside_coordinates_and_boxes_outside_the_photo_are_400s_that_say_which(self):
        cases = {
            (
                "auto,1,2,3,4",
                (),
            ): "Crop: crop=auto cannot go with coordinates: give crop=auto, crop=none or crop=x,y,w,h alone. Received: 'auto,1,2,3,4'",
            (
                "auto",
                ("x", "y"),
            ): "Crop: crop=auto finds the item itself, so it cannot go with coordinates (received x, y). Leave them out, or give the box as crop=x,y,w,h.",
            (
                "",
                ("w",),
            ): "Crop: crop=auto finds the item itself, so it cannot go with coordinates (received w). Leave them out, or give the box as crop=x,y,w,h.",
            ("1,2,3,4", ("x",)): "Crop: Give the box as crop=x,y,w,h; separate x fields are not read.",
            (
                "100,0,64,64",
                (),
            ): "Crop: The crop 100,0,64,64 (x,y,w,h) reaches outside the photo, which is 128×64 pixels: it ends at x=164, y=64.",
            (
                "0,60,10,10",
                (),
            ): "Crop: The crop 0,60,10,10 (x,y,w,h) reaches outside the photo, which is 128×64 pixels: it ends at x=10, y=70.",
        }
        for (crop, loose), message in cases.items():
            body = self.search(status=400, crop=crop, **{name: "1" for name in loose})
            self.assertEqual(body, {"error": message}, (crop, loose))

    def test_with_no_active_model_the_503_stays(self):
        from .factories import serving_set

        serving_set(self.version, is_active=False)
        response = self.client.post(API, {"image": upload(self.photo)})
        self.assertEqual(response.status_code, 503)
        self.assertIn("no model is active", response.json()["error"])

    def test_a_failing_proposer_searches_the_whole_photo_with_a_notice(self):
        with (
            mock.patch("search.queries.boxes.propose_boxes", side_effect=RuntimeError("broken localiser")),
            self.assertLogs("search.queries.boxes", "ERROR"),
        ):
            body = self.search()
        self.assertEqual((body["boxes"], body["box"], body["notice"]), ([], None, NO_PROPOSALS))
        self.assertEqual(self.titles(body), self.titles(self.search(crop="none")))

    def test_a_version_with_a_localiser_searches_its_box(self):
        ModelVersion.objects.filter(pk=self.version.pk).update(
            metrics={**self.version.metrics, "localiser": {"iou": 0.9}}
        )
        module = types.ModuleType("ml.localiser")
        # Boxes past the photo's edge are clipped to it, and one with nothing inside the photo dropped.
        module.localiser_boxes = lambda version, image: [
            Box(64, 0, 90, 64, 0.9),
            Box(0, 0, 64, 64, 0.4),
            Box(200, 0, 10, 10, 0.3),
        ]
        with _module("ml.localiser", module):
            body = self.search()
        self.assertEqual([b["score"] for b in body["boxes"]], [0.9, 0.4])
        self.assertEqual(body["box"], {k: body["boxes"][0][k] for k in "xywh"})
        # The tiny model does not frame its images: the box grows around the item, as packshots show it.
        self.assertEqual(body["box"], {"x": 56, "y": 0, "w": 72, "h": 64})
        self.assertTrue(self.titles(body)[0].startswith("triangle"), self.titles(body))

    def test_a_version_with_a_localiser_searches_its_box_with_the_item_alone(self):
        ModelVersion.objects.filter(pk=self.version.pk).update(
            metrics={**self.version.metrics, "localiser": {"iou": 0.9}}
        )
        self.version.refresh_from_db()
        module = types.ModuleType("ml.localiser")
        module.localiser_boxes = lambda version, image: [Box(0, 0, 64, 64, 0.9)]
        calls = []

        def isolate(version, image, box, background):
            calls.append((image.shape, box, tuple(background)))
            return np.full((box[3], box[2], 3), (10, 200, 10), np.uint8)

        module.localiser_isolate = isolate
        info = read_image(self.photo, max_bytes=10**6)
        with (
            _module("ml.localiser", module),
            mock.patch("search.queries.boxes._frames", return_value=True),
            mock.patch("search.queries.boxes.embedder_for") as embedder_for,
        ):
            embedder_for.return_value.framing.background = (0, 0, 0)
            boxed = photo_boxes(info, AUTO, version=self.version)
            self.assertEqual(calls, [((64, 128, 3), (0, 0, 64, 64), (0, 0, 0))])
            self.assertEqual(boxed.image.image.getpixel((5, 5)), (10, 200, 10))  # what the localiser left
            # The proposal chosen again by its coordinates is cut out too; a box the shopper drew is not.
            self.assertEqual(photo_boxes(info, Crop(0, 0, 64, 64), version=self.version).chosen, 0)
            self.assertEqual(len(calls), 2)
            drawn = photo_boxes(info, Crop(70, 4, 50, 50), version=self.version)
            self.assertEqual(len(calls), 2)
            self.assertEqual(drawn.image.image.getpixel((5, 5)), info.image.getpixel((75, 9)))
            # No item found in the box: the box is searched as it is.
            module.localiser_isolate = lambda *args: None
            plain = photo_boxes(info, AUTO, version=self.version)
        self.assertEqual(plain.image.image.getpixel((32, 32)), info.image.getpixel((32, 32)))


@NO_RATE_LIMIT
class BoxesPageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        BoxesSearchTests.setUpTestData.__func__(cls)

    def post(self, photo: bytes | None = None, **data):
        return self.client.post(PAGE, {"image": upload(photo or self.photo), **data})

    def test_the_page_draws_each_box_as_a_choice_and_searches_the_best(self):
        response = self.post()
        self.assertEqual(response.status_code, 200)
        boxed = response.context["boxed"]
        self.assertEqual(len(boxed.boxes), 2)
        self.assertContains(response, "2 items in your photo")
        self.assertContains(response, "The results are for item 1.")
        self.assertContains(response, 'aria-pressed="true"', count=1)
        self.assertContains(response, 'aria-pressed="false"', count=1)
        for b in boxed.boxes:
            self.assertContains(response, f'data-box="{b.x},{b.y},{b.w},{b.h}"')
        self.assertContains(response, f"the boxed part, {boxed.boxes[0].w}×{boxed.boxes[0].h} px")
        self.assertContains(response, 'data-crop-again=""')  # the same search again: auto
        self.assertContains(response, 'src="data:image/png;base64,')  # the whole photo travels with the page
        self.assertTrue(response.context["result"].items[0].product.title.startswith("square"))
        self.assertContains(response, '<input type="hidden" name="crop" value="">')

    def test_choosing_the_second_box_marks_it_and_searches_it(self):
        second = self.post().context["boxed"].boxes[1]
        crop = f"{second.x},{second.y},{second.w},{second.h}"
        response = self.post(crop=crop)
        self.assertContains(response, "The results are for item 2.")
        self.assertEqual(response.context["boxed"].chosen, 1)
        self.assertContains(response, f'data-crop-again="{crop}"')
        self.assertTrue(response.context["result"].items[0].product.title.startswith("triangle"))

    def test_a_drawn_box_and_the_whole_photo(self):
        response = self.post(crop="64,0,64,64")
        self.assertContains(response, "The results are for the box you drew.")
        self.assertContains(response, "data-drawn-box")
        response = self.post(crop="none")
        self.assertContains(response, "The results are for the whole photo.")
        self.assertContains(response, 'data-crop-again="none"')
        self.assertNotContains(response, "data-cropped")

    def test_no_item_found_says_the_whole_photo_was_used(self):
        response = self.post(wall())
        self.assertContains(response, "No item found")
        self.assertContains(response, NO_ITEM)
        self.assertNotContains(response, "data-box=")

    def test_a_large_photo_travels_as_a_smaller_jpeg_and_a_box_sent_back_from_it_is_still_chosen(self):
        big = Image.new("RGB", (2500, 1000))
        big.paste(shape_image("square", color=COLORS[0], size=500).resize((1000, 1000)), (0, 0))
        big.paste(shape_image("triangle", color=COLORS[1], size=500).resize((1000, 1000)), (1500, 0))
        response = self.post(image_bytes(big))
        self.assertContains(response, 'data-width="2500" data-height="1000"')
        uri = response.context["photo"]["uri"]
        self.assertTrue(uri.startswith("data:image/jpeg;base64,"), uri[:40])
        carried = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        self.assertEqual(carried.size, (2048, 819))
        # The page's script scales the second box to the copy and sends it back with the copy.
        second = response.context["boxed"].boxes[1]
        k = 2048 / 2500
        crop = f"{int(second.x * k)},{int(second.y * k)},{int(second.w * k)},{int(second.h * k)}"
        buffer = io.BytesIO()
        carried.save(buffer, format="JPEG")
        response = self.post(buffer.getvalue(), crop=crop)
        self.assertEqual(response.context["boxed"].chosen, 1)
        self.assertContains(response, "The results are for item 2.")

    def test_auto_beside_coordinates_on_the_page_is_a_400_with_the_message(self):
        response = self.post(crop="auto,0,0,10,10")
        self.assertContains(response, "crop=auto cannot go with coordinates", status_code=400)
