import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ml.artifacts import ModelLoadError, localiser_load, localiser_paths
from ml.localiser import (
    boxes_from_probability,
    build_localiser,
    iou,
    localise,
    too_small,
    train_localiser,
)
from ml.scenes import SceneSpec
from ml.tests.test_scenes import _items

SPEC = SceneSpec(size=32)


class BoxTests(unittest.TestCase):
    def test_two_separate_parts_give_two_boxes_in_photo_pixels_larger_first(self):
        prob = np.zeros((16, 16), np.float32)
        prob[2:6, 2:6] = 0.9  # 4 x 4
        prob[8:15, 9:15] = 0.8  # 7 x 6: more mass, first
        boxes = boxes_from_probability(prob, width=320, height=160)
        self.assertEqual(len(boxes), 2)
        self.assertEqual(boxes[0][:4], (180, 80, 120, 70))
        self.assertEqual(boxes[1][:4], (40, 20, 80, 40))
        self.assertAlmostEqual(boxes[0][4], 0.8, places=4)

    def test_nothing_above_the_threshold_or_only_specks_gives_no_box(self):
        self.assertEqual(boxes_from_probability(np.full((16, 16), 0.2, np.float32), 100, 100), [])
        speck = np.zeros((64, 64), np.float32)
        speck[5, 5] = 0.99
        self.assertEqual(boxes_from_probability(speck, 100, 100), [])

    def test_iou_of_known_boxes(self):
        self.assertEqual(iou((0, 0, 10, 10), (0, 0, 10, 10)), 1.0)
        self.assertAlmostEqual(iou((0, 0, 10, 10), (5, 0, 10, 10)), 50 / 150)
        self.assertEqual(iou((0, 0, 4, 4), (10, 10, 2, 2)), 0.0)


class TooSmallTests(unittest.TestCase):
    def test_a_handful_of_photos_is_too_small_with_the_reason(self):
        images, masks = _items(3)
        self.assertIn("only 3 of 3", too_small(images, masks))

    def test_identical_items_are_too_uniform(self):
        images, masks = _items(1)
        reason = too_small(np.repeat(images, 20, axis=0), np.repeat(masks, 20, axis=0))
        self.assertIn("alike", reason)

    def test_the_fallback_is_recorded_without_training(self):
        images, masks = _items(3)
        with tempfile.TemporaryDirectory() as tmp:
            figures = train_localiser(images, masks, workdir=Path(tmp), seed=0, steps=1)
            self.assertIsNone(figures["localiser"])
            self.assertIn("only 3", figures["localiser_skipped"])
            self.assertFalse(localiser_paths(tmp)[0].exists())


class TrainTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images, cls.masks = _items(16, size=24)
        cls._tmp = tempfile.TemporaryDirectory()
        cls.workdir = Path(cls._tmp.name)
        cls.figures = train_localiser(
            cls.images,
            cls.masks,
            workdir=cls.workdir,
            seed=0,
            steps=30,
            composites=96,
            batch_size=16,
            width=4,
            spec=SPEC,
        )

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_training_records_its_figures(self):
        figures = self.figures["localiser"]
        for key in ("box_iou_mean", "share_iou_0_7", "any_box_share_iou_0_7", "eval_cutouts", "seconds"):
            self.assertIn(key, figures)
        self.assertTrue(0.0 <= figures["share_iou_0_7"] <= figures["any_box_share_iou_0_7"] <= 1.0)
        self.assertEqual(figures["train_cutouts"] + figures["eval_cutouts"], 16)

    def test_the_saved_localiser_loads_and_gives_the_same_boxes(self):
        model, info = localiser_load(self.workdir)
        self.assertEqual(info["input_size"], 32)
        photo = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
        from PIL import Image

        x = np.asarray(Image.fromarray(photo).resize((32, 32), Image.Resampling.BILINEAR), np.float32)[None]
        np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(model(x, training=False)))
        boxes = localise(model, info, photo)
        for x0, y0, w, h, score in boxes:
            self.assertTrue(0 <= x0 and 0 <= y0 and x0 + w <= 70 and y0 + h <= 50 and w > 0 and h > 0)
            self.assertTrue(0.0 <= score <= 1.0)

    def test_localiser_boxes_answers_boxes_of_the_given_image(self):
        from ml.localiser import localiser_boxes
        from ml.proposals import Box

        photo = np.full((60, 90, 3), 200, np.uint8)
        photo[10:50, 20:60] = (200, 30, 30)
        boxes = localiser_boxes(SimpleNamespace(workdir=self.workdir), photo)
        self.assertTrue(all(isinstance(b, Box) for b in boxes))
        self.assertEqual(boxes, localiser_boxes(SimpleNamespace(workdir=self.workdir), photo))

    def test_a_missing_localiser_is_a_load_error(self):
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(ModelLoadError):
            localiser_load(tmp)


class ModelTests(unittest.TestCase):
    def test_the_network_marks_pixels_at_half_resolution(self):
        model = build_localiser(input_size=32, width=4)
        self.assertEqual(tuple(model.output.shape), (None, 16, 16, 1))
        with self.assertRaises(ValueError):
            build_localiser(input_size=30)


class RefineTests(unittest.TestCase):
    """refine_box: a second look at a window around a coarse box redraws it around the item."""

    @staticmethod
    def _red_marker():
        """A stand-in network: logits high where the pixel is red, at half the input's resolution."""
        import tensorflow as tf

        def model(x, training=False):
            red = tf.cast((x[..., 0] > 150) & (x[..., 1] < 80), tf.float32)[..., None]
            return tf.nn.avg_pool2d(red, 2, 2, "VALID") * 20.0 - 10.0

        return model

    def test_a_coarse_box_is_redrawn_around_the_item(self):
        from ml.localiser import refine_box

        photo = np.full((240, 320, 3), (120, 100, 80), np.uint8)
        photo[60:180, 100:200] = (210, 30, 30)  # the item: x 100-200, y 60-180
        photo[10:30, 280:300] = (210, 30, 30)  # a small red thing far away, outside the window
        info = {"input_size": 64, "threshold": 0.5}
        fine = refine_box(self._red_marker(), info, photo, (90, 40, 130, 150))
        self.assertGreater(iou(fine, (100, 60, 100, 120)), 0.9, fine)

    def test_a_window_with_nothing_in_it_keeps_the_box(self):
        from ml.localiser import refine_box

        photo = np.full((240, 320, 3), (120, 100, 80), np.uint8)
        info = {"input_size": 64, "threshold": 0.5}
        self.assertEqual(refine_box(self._red_marker(), info, photo, (90, 40, 130, 150)), (90, 40, 130, 150))
