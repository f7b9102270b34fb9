"""Item boxes on synthetic photos: one item, two items, specks, plain walls, and the localiser's turn."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
from django.test import SimpleTestCase
from PIL import Image, ImageDraw

from ml.proposals import Box, packshot_like, plain_background, propose_boxes


def photo(*items, size=(480, 360), background=(232, 228, 220), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A light backdrop with filled shapes: items are (kind, (x0, y0, x1, y1), colour)."""
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    for kind, box, colour in items:
        (draw.ellipse if kind == "ellipse" else draw.rectangle)(box, fill=colour)
    a = np.asarray(img, np.float32)
    if noise:
        a = a + np.random.default_rng(seed).normal(0.0, noise, a.shape)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


def iou(box: Box, x0: int, y0: int, x1: int, y1: int) -> float:
    """Against the item's exact box; a proposal carries a margin of 6% a side, so 0.8 at best."""
    ix = max(0, min(box.x + box.w, x1) - max(box.x, x0))
    iy = max(0, min(box.y + box.h, y1) - max(box.y, y0))
    inter = ix * iy
    return inter / (box.w * box.h + (x1 - x0) * (y1 - y0) - inter)


class ProposalTests(SimpleTestCase):
    def test_one_item_gives_one_box_around_it(self):
        boxes = propose_boxes(photo(("rect", (120, 80, 299, 279), (200, 40, 40)), noise=4))
        self.assertEqual(len(boxes), 1, boxes)
        self.assertGreater(iou(boxes[0], 120, 80, 300, 280), 0.7)
        self.assertTrue(0.0 < boxes[0].score <= 1.0)
        # The margin keeps the item's edges inside the box.
        box = boxes[0]
        self.assertTrue(box.x <= 120 and box.y <= 80 and box.x + box.w >= 300 and box.y + box.h >= 280, box)

    def test_two_items_give_two_boxes_best_first(self):
        shirt = ("rect", (30, 60, 209, 319), (40, 70, 200))  # the larger item
        bag = ("ellipse", (290, 140, 409, 239), (190, 120, 40))
        boxes = propose_boxes(photo(shirt, bag, noise=3))
        self.assertEqual(len(boxes), 2, boxes)
        self.assertGreater(iou(boxes[0], 30, 60, 210, 320), 0.7)
        self.assertGreater(iou(boxes[1], 290, 140, 410, 240), 0.7)
        self.assertGreater(boxes[0].score, boxes[1].score)

    def test_a_light_item_on_a_dark_background(self):
        boxes = propose_boxes(photo(("ellipse", (200, 100, 329, 259), (240, 240, 240)), background=(12, 12, 14)))
        self.assertEqual(len(boxes), 1, boxes)
        self.assertGreater(iou(boxes[0], 200, 100, 330, 260), 0.7)  # the margin and the edge blur

    def test_a_plain_wall_a_blank_page_and_a_gradient_give_no_box(self):
        self.assertEqual(propose_boxes(photo()), [])
        self.assertEqual(propose_boxes(photo(background=(255, 255, 255))), [])
        self.assertEqual(propose_boxes(photo(background=(120, 110, 100), noise=10)), [])
        ramp = np.linspace(60, 230, 480, dtype=np.float32)[None, :, None] * np.ones((360, 1, 3), np.float32)
        self.assertEqual(propose_boxes(ramp.astype(np.uint8)), [])

    def test_specks_are_not_items(self):
        specks = [
            ("rect", (x, y, x + 2, y + 2), (20, 20, 20)) for x, y in ((50, 50), (300, 90), (400, 300), (100, 250))
        ]
        self.assertEqual(propose_boxes(photo(*specks)), [])
        # Beside a real item, specks still give no box of their own.
        boxes = propose_boxes(photo(("rect", (150, 100, 329, 279), (30, 120, 60)), *specks))
        self.assertEqual(len(boxes), 1, boxes)

    def test_noise_all_over_is_no_item(self):
        rng = np.random.default_rng(3)
        self.assertEqual(propose_boxes(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)), [])

    def test_an_item_filling_the_photo_is_not_proposed_as_the_whole_photo(self):
        boxes = propose_boxes(photo(("rect", (6, 6, 473, 353), (200, 40, 40))))
        self.assertEqual(boxes, [])

    def test_parts_of_one_item_close_together_are_one_box(self):
        # A bag and its strap, a few pixels apart: one item.
        bag = ("rect", (150, 160, 329, 299), (120, 60, 30))
        strap = ("rect", (200, 100, 279, 155), (120, 60, 30))
        boxes = propose_boxes(photo(bag, strap))
        self.assertEqual(len(boxes), 1, boxes)
        self.assertGreater(iou(boxes[0], 150, 100, 330, 300), 0.7)

    def test_tiny_and_odd_shaped_photos(self):
        tiny = photo(("rect", (4, 4, 11, 11), (200, 40, 40)), size=(16, 16), background=(0, 0, 0))
        self.assertEqual(len(propose_boxes(tiny)), 1)
        self.assertEqual(propose_boxes(np.zeros((1, 1, 3), np.uint8)), [])
        wide = photo(("rect", (500, 10, 599, 49), (200, 40, 40)), size=(1600, 60))
        [box] = propose_boxes(wide)
        self.assertGreater(iou(box, 500, 10, 600, 50), 0.7)
        with self.assertRaisesMessage(ValueError, "uint8 RGB array [H, W, 3]"):
            propose_boxes(np.zeros((10, 10), np.uint8))

    def test_at_most_a_few_boxes(self):
        items = [
            ("rect", (20 + 90 * i, 40 + 150 * j, 80 + 90 * i, 140 + 150 * j), (40, 40, 200))
            for i in range(5)
            for j in range(2)
        ]
        boxes = propose_boxes(photo(*items))
        self.assertEqual(len(boxes), 5)
        self.assertEqual([b.score for b in boxes], sorted((b.score for b in boxes), reverse=True))

    def test_a_version_with_a_localiser_answers_with_it(self):
        image = photo(("rect", (120, 80, 299, 279), (200, 40, 40)))
        learned = [Box(1, 2, 3, 4, 0.5)]
        module = types.ModuleType("ml.localiser")
        calls = []
        module.localiser_boxes = lambda version, img: calls.append((version, img.shape)) or learned
        version = SimpleNamespace(pk=1, metrics={"localiser": {"files": "localiser.keras"}})
        with _module("ml.localiser", module):
            self.assertEqual(propose_boxes(image, version=version), learned)
            self.assertEqual(calls, [(version, (360, 480, 3))])
            # Without one recorded on the version, the classical proposer.
            self.assertNotEqual(propose_boxes(image, version=SimpleNamespace(pk=2, metrics={})), learned)

    def test_without_the_localiser_module_the_classical_proposer_answers(self):
        image = photo(("rect", (120, 80, 299, 279), (200, 40, 40)))
        version = SimpleNamespace(pk=1, metrics={"localiser": {"files": "localiser.keras"}})
        with _module("ml.localiser", None):  # None in sys.modules: the import raises ImportError
            self.assertEqual(propose_boxes(image, version=version), propose_boxes(image))


class PackshotLikeTests(SimpleTestCase):
    """One item on a clean backdrop is a packshot (searched whole, framing crops it); a loud surface or a
    second thing beside the item is a shopper's photo (searched by its box)."""

    def test_one_item_on_a_clean_backdrop_is_a_packshot(self):
        self.assertTrue(packshot_like(photo(("rect", (150, 100, 330, 260), (200, 30, 30)), noise=2.0)))

    def test_an_item_on_a_loud_surface_is_not_though_framing_calls_the_surface_plain(self):
        carpet = photo(("rect", (150, 100, 330, 260), (200, 30, 30)), background=(120, 60, 50), noise=30.0)
        self.assertTrue(plain_background(carpet))  # framing's threshold follows the surface's noise
        self.assertFalse(packshot_like(carpet))

    def test_an_item_with_something_beside_it_is_not(self):
        mug = photo(("rect", (150, 100, 330, 260), (200, 30, 30)), ("ellipse", (380, 40, 450, 110), (30, 60, 120)))
        self.assertFalse(packshot_like(mug))


class _module:
    """Put `module` in sys.modules under `name` for a with-block (None: importing it fails)."""

    def __init__(self, name, module):
        self.name, self.module = name, module

    def __enter__(self):
        self.saved = sys.modules.get(self.name, _missing)
        sys.modules[self.name] = self.module

    def __exit__(self, *exc):
        if self.saved is _missing:
            sys.modules.pop(self.name, None)
        else:
            sys.modules[self.name] = self.saved


_missing = object()
