import io
import tempfile
import unittest
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from ml.augment import StatelessRandom, ViewAugment, augment_views
from ml.input import Augment, balanced_order, decode_once, make_balanced_dataset, make_dataset, split_by_group
from ml.preprocess import (
    Framing,
    arrays_to_input,
    bytes_to_input,
    decode,
    draft_size,
    file_to_input,
    model_input,
    png_as_is,
)
from ml.tests import shapes_dataset

FRAMED = Framing(enabled=True, background=(0, 0, 0))


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}), **kwargs)
    return buf.getvalue()


class PreprocessTests(unittest.TestCase):
    def setUp(self):
        self.images, _ = shapes_dataset(4, size=24)

    def test_output_is_rgb_square_float_in_0_255(self):
        for framing in (FRAMED, Framing(enabled=False)):
            out = model_input(self.images[0], 16, framing)
            self.assertEqual((out.shape, out.dtype), ((16, 16, 3), np.float32))
            self.assertTrue((out >= 0).all() and (out <= 255).all())

    def test_png_as_is_only_where_the_contract_keeps_the_pixels(self):
        from PIL import PngImagePlugin

        unframed = Framing(enabled=False)
        rgb = Image.fromarray(self.images[0])
        text = PngImagePlugin.PngInfo()
        text.add_text("Raw profile type exif", "orientation")
        as_is = {
            "rgb": _encode(rgb, "PNG"),
            "grey": _encode(rgb.convert("L"), "PNG"),
            "with a resolution": _encode(rgb, "PNG", dpi=(72, 72)),
        }
        not_as_is = {
            "transparent": _encode(rgb.convert("RGBA"), "PNG"),
            "grey with a transparent level": _encode(rgb.convert("L"), "PNG", transparency=0),
            "palette": _encode(rgb.convert("P"), "PNG"),
            "16-bit": _encode(Image.fromarray(self.images[0][..., 0].astype(np.uint16) * 257), "PNG"),
            "text that may hold an orientation": _encode(rgb, "PNG", pnginfo=text),
            "another size": _encode(rgb.resize((20, 20)), "PNG"),
            "truncated": _encode(rgb, "PNG")[:-20],
            "jpeg": _encode(rgb, "JPEG"),
        }
        for name, data in as_is.items():
            self.assertTrue(png_as_is(data, 24, unframed), name)
            self.assertFalse(png_as_is(data, 24, FRAMED), f"{name}, framed")
            self.assertFalse(png_as_is(data, 16, unframed), f"{name}, another model size")
            # As-is means it: the contract's input is the decoded pixels, grey repeated to RGB.
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
            np.testing.assert_array_equal(bytes_to_input(data, 24, unframed), pixels)
        for name, data in not_as_is.items():
            self.assertFalse(png_as_is(data, 24, unframed), name)

    def test_grey_input_becomes_three_equal_channels(self):
        grey = self.images[1][..., 0]
        out = model_input(grey, 16, FRAMED)
        np.testing.assert_array_equal(out[..., 0], out[..., 2])

    def test_files_bytes_and_arrays_give_the_same_input(self):
        with tempfile.TemporaryDirectory() as tmp:
            for i, img in enumerate(self.images):
                path = Path(tmp) / f"{i}.png"
                Image.fromarray(img).save(path)
                from_file = file_to_input(path, 16, FRAMED)
                np.testing.assert_array_equal(from_file, bytes_to_input(path.read_bytes(), 16, FRAMED))
                np.testing.assert_array_equal(from_file, arrays_to_input(img[None], 16, FRAMED)[0])

    def test_large_jpeg_is_decoded_at_reduced_scale_the_same_way_every_time(self):
        big = Image.fromarray(np.kron(self.images[2], np.ones((40, 40, 1), np.uint8)))  # 960 px
        data = _encode(big, "JPEG")
        a, b = decode(data, 32), decode(data, 32)
        np.testing.assert_array_equal(a, b)
        self.assertLess(max(a.shape[:2]), 960)
        self.assertGreaterEqual(min(a.shape[:2]), draft_size(32))

    def test_bad_size_raises(self):
        with self.assertRaisesRegex(ValueError, "image_size=0"):
            model_input(self.images[0], 0, FRAMED)

    def test_undecodable_bytes_raise_the_importers_reason(self):
        from catalog.images import InvalidImage

        with self.assertRaisesRegex(InvalidImage, "not an image"):
            bytes_to_input(b"not an image at all", 16, FRAMED)


class InputTests(unittest.TestCase):
    def test_split_keeps_each_group_on_one_side(self):
        groups = np.repeat(np.arange(30), 3)
        train, evaluation = split_by_group(groups, 0.2, seed=1)
        self.assertEqual(len(train) + len(evaluation), 90)
        self.assertFalse(set(groups[train]) & set(groups[evaluation]))
        self.assertEqual(len(set(groups[evaluation])), 6)
        train, evaluation = split_by_group(groups, 0.0, seed=1)
        self.assertEqual((len(train), len(evaluation)), (90, 0))

    def test_balanced_order_gives_k_images_of_p_classes(self):
        labels = np.repeat(np.arange(6), 10)
        order = balanced_order(labels, 3, 4, 5, np.random.default_rng(0)).reshape(5, 12)
        for batch in order:
            counts = np.unique(labels[batch], return_counts=True)[1]
            self.assertEqual(sorted(counts.tolist()), [4, 4, 4])

    def test_balanced_order_needs_two_classes(self):
        with self.assertRaisesRegex(ValueError, "at least 2 classes"):
            balanced_order(np.zeros(10, int), 2, 2, 1, np.random.default_rng(0))
        # Products with one photo are usable when augmented views are the positives.
        order = balanced_order(np.arange(4), 2, 2, 3, np.random.default_rng(0), min_per_class=1)
        self.assertEqual(len(order), 12)

    def test_decode_once_reads_each_file_once_and_records_failures(self):
        images, labels = shapes_dataset(6, size=20)
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, img in enumerate(images):
                path = Path(tmp) / f"{i}.{'png' if i % 2 else 'jpg'}"
                Image.fromarray(img).save(path)
                paths.append(str(path))
            Path(paths[3]).write_bytes(b"broken")
            framed = decode_once(paths, image_size=16, framing=FRAMED)
            self.assertEqual(framed.images.shape, (6, 16, 16, 3))
            self.assertEqual(list(framed.failures), [3])
            self.assertIn("not an image", framed.failures[3])
            self.assertEqual(framed.usable.tolist(), [True, True, True, False, True, True])
            np.testing.assert_array_equal(framed.images[1], file_to_input(paths[1], 16, FRAMED).astype(np.uint8))
            # A cache that does not fit in memory lives in the run's folder and is reused.
            import ml.input

            limit, ml.input.IN_MEMORY_BYTES = ml.input.IN_MEMORY_BYTES, 10
            try:
                first = decode_once(paths, image_size=16, framing=FRAMED, cache_dir=Path(tmp) / "cache")
                again = decode_once(paths, image_size=16, framing=FRAMED, cache_dir=Path(tmp) / "cache")
            finally:
                ml.input.IN_MEMORY_BYTES = limit
            self.assertIsInstance(again.images, np.memmap)
            np.testing.assert_array_equal(first.images, again.images)
            self.assertEqual(again.failures, first.failures)

    def test_datasets_batch_and_balance(self):
        images, labels = shapes_dataset(6, size=20)
        framed = decode_once(images, image_size=16, framing=FRAMED)
        ds = make_dataset(framed, {"y": labels}, np.arange(6), batch_size=4, shuffle=False, augment=Augment("light"))
        batches = list(ds)
        self.assertEqual([tuple(x.shape) for x, _ in batches], [(4, 16, 16, 3), (2, 16, 16, 3)])
        np.testing.assert_array_equal(np.concatenate([y["y"] for _, y in batches]), labels)
        balanced = make_balanced_dataset(
            framed,
            {"y": labels},
            labels,
            np.arange(6),
            classes_per_batch=2,
            per_class=2,
            augment=Augment("views", background=(0, 0, 0)),
        )
        x, y = next(iter(balanced))
        self.assertEqual(tuple(x.shape), (4, 16, 16, 3))
        self.assertEqual(sorted(np.unique(y["y"].numpy(), return_counts=True)[1].tolist()), [2, 2])

    def test_augmentation_repeats_with_its_seed(self):
        images, labels = shapes_dataset(8, size=20)
        framed = decode_once(images, image_size=16, framing=FRAMED)

        def first(seed):
            ds = make_dataset(
                framed,
                {"y": labels},
                np.arange(8),
                batch_size=8,
                shuffle=True,
                seed=seed,
                augment=Augment("views", background=(0, 0, 0)),
            )
            return next(iter(ds))[0].numpy()

        np.testing.assert_array_equal(first(3), first(3))
        self.assertGreater(np.abs(first(3) - first(4)).mean(), 1.0)


class AugmentViewsTests(unittest.TestCase):
    def test_views_keep_colour(self):
        red = np.zeros((4, 24, 24, 3), np.float32)
        red[:, 6:18, 6:18] = (200, 30, 30)
        mask = np.zeros((4, 24, 24), np.float32)
        mask[:, 6:18, 6:18] = 1
        out = augment_views(
            tf.constant(red),
            tf.constant(mask),
            tf.constant([0.0, 0.0, 0.0]),
            ViewAugment(background_share=1.0, zoom=(1.0, 1.0), shift=0.0, rotation=0.0, flip=False),
            StatelessRandom(tf.constant([1, 2])),
        ).numpy()
        item = out[mask.astype(bool) & (out.max(axis=-1) > 60)]
        # Brightness and contrast change, hue does not: red stays the strongest channel by far.
        self.assertTrue((item[:, 0] > 2 * item[:, 1]).mean() > 0.9)
