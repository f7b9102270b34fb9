import unittest

import numpy as np

from ml.framing import Framing, frame_with_mask
from ml.scenes import TEXTURES, SceneSpec, composite, composite_batch, cutout, cutouts, texture
from ml.tests import SHAPES, shape_image

SPEC = SceneSpec(size=48)


def _items(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    framed = [frame_with_mask(shape_image(SHAPES[i % len(SHAPES)], size, rng), size, Framing()) for i in range(n)]
    images = np.stack([f[0] for f in framed])
    masks = np.stack([(f[1] * 255).astype(np.uint8) for f in framed])
    return images, masks


class CutoutTests(unittest.TestCase):
    def test_a_framed_packshot_gives_a_cutout_cropped_to_its_mask(self):
        images, masks = _items(1)
        c = cutout(images[0], masks[0])
        self.assertIsNotNone(c)
        self.assertEqual(c.rgb.shape[:2], c.mask.shape)
        self.assertLessEqual(c.mask.max(), 1.0)
        # cropped to the item: every border row and column holds some of it
        solid = c.mask > 0.5
        self.assertTrue(solid[0].any() and solid[-1].any() and solid[:, 0].any() and solid[:, -1].any())

    def test_a_mask_that_is_the_whole_photo_or_nothing_is_no_cutout(self):
        rgb = np.zeros((16, 16, 3), np.uint8)
        self.assertIsNone(cutout(rgb, np.ones((16, 16), np.float32)))
        self.assertIsNone(cutout(rgb, np.zeros((16, 16), np.float32)))
        items, index = cutouts(np.stack([rgb, rgb]), np.stack([np.ones((16, 16)), np.zeros((16, 16))]))
        self.assertEqual((items, index), ([], []))


class SceneTests(unittest.TestCase):
    def test_every_texture_fills_the_frame_within_range(self):
        rng = np.random.default_rng(0)
        for kind in TEXTURES:
            t = texture(kind, 40, rng)
            self.assertEqual(t.shape, (40, 40, 3))
            self.assertTrue(0 <= t.min() and t.max() <= 255, kind)
        with self.assertRaises(ValueError):
            texture("marble", 40, rng)

    def test_a_composite_has_the_main_item_first_inside_the_frame_and_its_mask(self):
        images, masks = _items()
        items, _ = cutouts(images, masks)
        c = composite(items, 2, np.random.default_rng(3), SPEC, empty=False)
        self.assertEqual(c.image.shape, (48, 48, 3))
        self.assertEqual(c.image.dtype, np.uint8)
        self.assertEqual(c.sources[0], 2)
        x, y, w, h = c.boxes[0]
        self.assertTrue(0 <= x and 0 <= y and x + w <= 48 and y + h <= 48)
        # the mask covers most of the main box (it is on top: nothing occludes it)
        self.assertGreater(c.mask[y : y + h, x : x + w].mean(), 0.2)
        self.assertEqual(set(np.unique(c.mask)) <= {0, 1}, True)

    def test_items_span_the_scale_range(self):
        images, masks = _items()
        items, _ = cutouts(images, masks)
        _, _, boxes = composite_batch(
            items, 60, seed=1, spec=SceneSpec(size=48, extra_items=(0, 0), props=(0, 0), empty_share=0.0, rotation=0.0)
        )
        sides = np.array([max(b[0][2], b[0][3]) / 48 for b in boxes])
        self.assertLess(sides.min(), 0.35)
        self.assertGreater(sides.max(), 0.65)

    def test_an_empty_scene_has_no_box_and_no_mask(self):
        images, masks = _items()
        items, _ = cutouts(images, masks)
        c = composite(items, 0, np.random.default_rng(0), SPEC, empty=True)
        self.assertEqual(c.boxes, [])
        self.assertEqual(int(c.mask.sum()), 0)

    def test_the_same_seed_gives_the_same_batch_and_another_seed_another(self):
        images, masks = _items()
        items, _ = cutouts(images, masks)
        a = composite_batch(items, 8, seed=5, spec=SPEC)
        b = composite_batch(items, 8, seed=5, spec=SPEC)
        c = composite_batch(items, 8, seed=6, spec=SPEC)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        self.assertEqual(a[2], b[2])
        self.assertFalse(np.array_equal(a[0], c[0]))

    def test_no_cutouts_is_a_clear_error(self):
        with self.assertRaises(ValueError):
            composite_batch([], 2, seed=0)
