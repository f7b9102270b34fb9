"""Framing (ml.framing): the same item gives the same model input wherever and however it sits in the photo."""

from __future__ import annotations

import unittest

import numpy as np
from PIL import Image, ImageDraw

from ml.framing import Framing, catalogue_framing, estimate_background, frame, frame_with_mask


def item_photo(
    *, size=(200, 160), box=(60, 40, 120, 130), bg=(240, 240, 236), colour=(200, 30, 40), stripe=(40, 40, 200)
) -> np.ndarray:
    """A red item with a blue stripe on a plain background."""
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=colour)
    half = max(1, (y1 - y0) // 18)  # the stripe scales with the item
    draw.rectangle((x0, (y0 + y1) // 2 - half, x1, (y0 + y1) // 2 + half), fill=stripe)
    return np.asarray(img)


class FramingTests(unittest.TestCase):
    framing = Framing(enabled=True, background=(240, 240, 236))

    def test_position_and_scale_do_not_change_the_framed_item(self):
        a = frame(item_photo(box=(20, 10, 80, 100)), 32, self.framing).astype(float)
        b = frame(item_photo(size=(400, 300), box=(250, 100, 370, 280)), 32, self.framing).astype(float)
        self.assertLess(np.abs(a - b).mean(), 12.0)  # resampling edges only
        centred = frame(item_photo(), 32, Framing(enabled=False)).astype(float)
        self.assertGreater(np.abs(a - centred).mean(), 20.0)  # without framing the two differ a lot

    def test_specks_on_the_background_do_not_stretch_the_frame(self):
        photo = item_photo(size=(400, 300), box=(150, 100, 250, 220))
        specked = photo.copy()
        rng = np.random.default_rng(1)
        ys, xs = rng.integers(0, 300, 1500), rng.integers(0, 400, 1500)  # a grainy backdrop: 1.2% of pixels
        specked[ys, xs] = np.clip(specked[ys, xs].astype(int) - 60, 0, 255)
        clean = frame(photo, 32, self.framing).astype(float)
        self.assertLess(np.abs(frame(specked, 32, self.framing).astype(float) - clean).mean(), 6.0)

    def test_a_small_item_keeps_the_detail_of_the_full_photo(self):
        # A 1-pixel-wide stripe in a photo four times the working size: lost when the item is cut
        # from the working copy, kept when it is cut from the decoded photo.
        photo = np.asarray(Image.new("RGB", (800, 600), (240, 240, 236))).copy()
        photo[200:400, 300:500] = (200, 30, 40)
        photo[200:400, 398:402] = (40, 40, 200)
        out = frame(photo, 96, self.framing).astype(int)
        blue_over_red = (out[30:66, :, 2] - out[30:66, :, 0]).max()
        self.assertGreater(blue_over_red, 60)  # 106 cut from the photo; -4 (no stripe) from the working copy

    def test_background_becomes_the_catalogue_colour(self):
        out, mask = frame_with_mask(item_photo(bg=(30, 30, 30)), 32, self.framing)
        self.assertTrue(np.allclose(out[0, 0], (240, 240, 236), atol=2))
        self.assertGreater(mask[16, 16], 0.9)
        self.assertLess(mask[0, 0], 0.1)
        # The item keeps its colour: red stays red.
        self.assertGreater(int(out[8, 16, 0]), 150)
        self.assertLess(int(out[8, 16, 2]), 100)

    def test_grey_item_on_the_opposite_background_is_inverted(self):
        light_on_dark = Framing(enabled=True, background=(0, 0, 0))
        photo = item_photo(bg=(0, 0, 0), colour=(220, 220, 220), stripe=(120, 120, 120))
        dark_on_light = 255 - photo
        a = frame(photo, 28, light_on_dark).astype(float)
        b = frame(dark_on_light, 28, light_on_dark).astype(float)
        self.assertLess(np.abs(a - b).mean(), 4.0)

    def test_busy_background_falls_back_to_the_whole_photo(self):
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
        self.assertFalse(estimate_background(noise.astype(np.float32)).plain)
        out = frame(noise, 16, self.framing)
        self.assertEqual(out.shape, (16, 16, 3))

    def test_deterministic_and_shaped(self):
        photo = item_photo()
        a, b = frame(photo, 24, self.framing), frame(photo.copy(), 24, self.framing)
        np.testing.assert_array_equal(a, b)
        self.assertEqual(a.dtype, np.uint8)
        self.assertEqual(a.shape, (24, 24, 3))

    def test_catalogue_framing_reads_the_usual_background(self):
        photos = [item_photo(bg=(250, 250, 250)) for _ in range(3)] + [item_photo(bg=(20, 20, 20))]
        framing = catalogue_framing(photos)
        self.assertTrue(framing.enabled)
        self.assertTrue(all(v >= 240 for v in framing.background))
        self.assertEqual(Framing.from_dict(framing.to_dict()), framing)
        self.assertFalse(Framing.from_dict(None).enabled)  # a version from before framing


class UnframedFastPathTests(unittest.TestCase):
    def test_an_image_already_square_at_the_model_size_gives_the_general_paths_pixels(self):
        from ml.framing import _square

        rgb = np.random.default_rng(3).integers(0, 256, (28, 28, 3), dtype=np.uint8)
        general = np.asarray(
            _square(Image.fromarray(rgb), (0, 0, 28, 28), (0, 0, 0), 0).resize((28, 28), Image.Resampling.BILINEAR)
        )
        fast, mask = frame_with_mask(rgb, 28, Framing(enabled=False))
        np.testing.assert_array_equal(fast, general)
        self.assertEqual(mask.shape, (28, 28))
        self.assertIsNot(fast, rgb)  # a copy: the caller may write to it
        # Any other size still takes the general path (padding, resize).
        self.assertEqual(frame(rgb[:20], 28, Framing(enabled=False)).shape, (28, 28, 3))


class ExposureTests(unittest.TestCase):
    """A light background photographed grey says the photo is under-exposed: the item is brightened
    by as much (Framing.exposure, on for versions trained since)."""

    framing = Framing(enabled=True, background=(244, 244, 244), exposure=True)

    def item(self, photo: np.ndarray) -> np.ndarray:
        return frame(photo, 32, self.framing)[12:20, 12:20].astype(float).mean(axis=(0, 1))  # inside the red

    def test_a_darker_photo_gives_the_item_its_colour_back(self):
        normal = self.item(item_photo(bg=(244, 244, 244)))
        darker = (item_photo(bg=(244, 244, 244)) * 0.6).astype(np.uint8)
        np.testing.assert_allclose(self.item(darker), normal, atol=8)
        plain = frame(darker, 32, Framing(enabled=True, background=(244, 244, 244)))[12:20, 12:20].mean(axis=(0, 1))
        self.assertGreater(np.abs(plain - normal).max(), 40)  # without it the item stays 40% darker

    def test_a_dark_backdrop_or_a_brighter_photo_is_left_as_it_is(self):
        without = Framing(enabled=True, background=(244, 244, 244))
        on_dark = item_photo(bg=(30, 30, 30))  # a dark backdrop says nothing of the exposure
        brighter = np.clip(item_photo(bg=(244, 244, 244)).astype(float) * 1.2, 0, 255).astype(
            np.uint8
        )  # white stays white
        for photo in (on_dark, brighter):
            np.testing.assert_array_equal(frame(photo, 32, self.framing), frame(photo, 32, without))

    def test_the_gain_is_bounded(self):
        very_dark = (item_photo(bg=(244, 244, 244)) * 0.42).astype(np.uint8)  # background 102: gain 1.8 at most
        self.assertLess(self.item(very_dark)[0], 200 * 0.42 * 1.8 + 4)

    def test_versions_trained_before_keep_their_pixels(self):
        old = Framing.from_dict({"enabled": True, "background": [244, 244, 244]})
        self.assertFalse(old.exposure)
        darker = (item_photo(bg=(244, 244, 244)) * 0.6).astype(np.uint8)
        np.testing.assert_array_equal(
            frame(darker, 32, old), frame(darker, 32, Framing(enabled=True, background=(244, 244, 244)))
        )
        self.assertTrue(Framing.from_dict(self.framing.to_dict()).exposure)


class GreyscaleCatalogueTests(unittest.TestCase):
    """Polarity and contrast stretching are for grey-scale catalogues (Framing.greyscale): in a colour
    catalogue, a white product on a white backdrop stays white and a dim photo keeps its colours."""

    colour = Framing(enabled=True, background=(244, 244, 244), exposure=True, greyscale=False)
    legacy = Framing(enabled=True, background=(244, 244, 244), exposure=True)  # greyscale not measured

    @staticmethod
    def centre(framing: Framing, photo: np.ndarray) -> np.ndarray:
        return frame(photo, 32, framing)[12:20, 12:20].astype(float).mean(axis=(0, 1))

    def test_a_white_product_on_a_white_backdrop_stays_white(self):
        shirt = item_photo(bg=(250, 250, 250), colour=(226, 226, 222), stripe=(226, 226, 222))
        self.assertGreater(self.centre(self.colour, shirt).min(), 215)
        # Read as a grey-scale image, its faint contrast was stretched (3x): a grey shirt.
        self.assertLess(self.centre(self.legacy, shirt).max(), 190)

    def test_a_dim_colour_photo_is_neither_inverted_nor_stretched(self):
        purple = item_photo(bg=(200, 200, 196), box=(80, 60, 110, 100), colour=(118, 52, 150), stripe=(118, 52, 150))
        dim = (purple * 0.6).astype(np.uint8)  # background 119: below the middle, faint colours
        r, g, b = self.centre(self.colour, dim)
        self.assertGreater(b, g + 25)  # still purple
        r, g, b = self.centre(self.legacy, dim)
        self.assertGreater(g, b)  # taken for a grey photo on a dark backdrop and inverted: green

    def test_catalogue_framing_measures_whether_the_catalogue_is_grey_scale(self):
        rng = np.random.default_rng(0)
        grey = [np.repeat(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), 3, axis=2) for _ in range(10)]
        self.assertTrue(catalogue_framing(grey).greyscale)
        colour = [item_photo(bg=(250, 250, 250)) for _ in range(10)]
        self.assertFalse(catalogue_framing(colour).greyscale)
        # White products photographed on white: their light's slight cast makes them colour photos.
        white = [item_photo(bg=(250, 250, 246), colour=(236, 236, 226), stripe=(236, 236, 226)) for _ in range(10)]
        self.assertFalse(catalogue_framing(white).greyscale)
        self.assertFalse(Framing.from_dict(catalogue_framing(colour).to_dict()).greyscale)
        self.assertIsNone(Framing.from_dict({"enabled": True, "background": [0, 0, 0]}).greyscale)
