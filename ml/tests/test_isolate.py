"""The item alone (ml.isolate): the surface around it becomes the catalogue's backdrop, a neighbour's
corner goes, and a box where the localiser finds nothing (or nothing but item) is left as it is."""

import unittest

import numpy as np

from ml.isolate import isolate

BACKDROP = (230, 228, 229)


def _photo() -> np.ndarray:
    """120 x 160 wood-like stripes with a red 40 x 30 item at (60, 40) and a blue 6 x 6 thing at (104, 40)."""
    rng = np.random.default_rng(0)
    stripes = (120 + 40 * np.sin(np.arange(160) / 3.0))[None, :, None] * np.array([1.0, 0.8, 0.6])
    photo = np.clip(stripes + rng.normal(0, 4, (120, 160, 3)), 0, 255).astype(np.uint8)
    photo[40:70, 60:100] = (200, 30, 30)
    photo[40:46, 104:110] = (30, 30, 200)
    return photo


def _knows(photo: np.ndarray, *, window=None):
    """A localiser that marks the photo's red and blue pixels, answering at half the window's resolution."""

    def probability(part: np.ndarray) -> np.ndarray:
        if window is not None:
            window.append(part.shape[:2])
        item = ((part[..., 0] > 150) & (part[..., 1] < 80)) | ((part[..., 2] > 150) & (part[..., 0] < 80))
        return item[::2, ::2].astype(np.float32)

    return probability


class IsolateTests(unittest.TestCase):
    def test_the_surface_becomes_the_backdrop_and_the_item_stays(self):
        photo = _photo()
        box = (50, 30, 60, 50)  # the item with a band of wood around it, and the blue thing's corner outside
        found = isolate(photo, box, _knows(photo), BACKDROP)
        self.assertIsNotNone(found)
        out = found.image
        self.assertEqual(out.shape, (50, 60, 3))
        np.testing.assert_array_equal(out[15:35, 15:45], photo[45:65, 65:95])  # the item's inside, untouched
        np.testing.assert_array_equal(out[2, 2], BACKDROP)  # the wood, gone
        np.testing.assert_array_equal(out[45, 55], BACKDROP)
        self.assertAlmostEqual(found.item_share, 30 * 40 / (50 * 60), delta=0.05)

    def test_a_small_neighbour_reaching_into_the_box_is_not_kept(self):
        photo = _photo()
        box = (50, 30, 62, 50)  # reaches x = 111: the blue thing (6 x 6) is inside the box
        out = isolate(photo, box, _knows(photo), BACKDROP).image
        np.testing.assert_array_equal(out[12, 57], BACKDROP)  # where the blue thing was

    def test_the_localiser_sees_the_box_with_surroundings(self):
        photo, seen = _photo(), []
        isolate(photo, (60, 40, 40, 30), _knows(photo, window=seen), BACKDROP)
        self.assertEqual(seen, [(60, 60)])  # 1.5 x the longer side, centred on the box

    def test_no_item_or_nothing_but_item_leaves_the_box_as_it_is(self):
        photo = _photo()
        self.assertIsNone(isolate(photo, (0, 80, 50, 40), _knows(photo), BACKDROP))  # only wood
        self.assertIsNone(isolate(photo, (62, 42, 30, 20), _knows(photo), BACKDROP))  # inside the item

    def test_a_box_outside_the_photo_is_refused(self):
        photo = _photo()
        with self.assertRaisesRegex(ValueError, "inside the 160x120 photo"):
            isolate(photo, (150, 0, 20, 20), _knows(photo), BACKDROP)
