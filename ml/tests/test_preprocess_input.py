import io
import tempfile
import unittest
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from ml.input import balanced_order, make_balanced_dataset, make_dataset, split_by_group
from ml.preprocess import arrays_to_input, decode_and_resize, pil_batch, pil_to_array
from ml.tests import shapes_dataset


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


class PreprocessTests(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.rgb = Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))

    def test_tf_and_pil_agree_on_png(self):
        for img in (self.rgb, self.rgb.convert("L"), self.rgb.convert("RGBA"), self.rgb.convert("P")):
            with self.subTest(mode=img.mode):
                data = _encode(img, "PNG")
                via_tf = decode_and_resize(tf.constant(data), 16).numpy()
                via_pil = pil_to_array(Image.open(io.BytesIO(data)), 16)
                np.testing.assert_allclose(via_tf, via_pil, atol=1e-3)

    def test_tf_and_pil_agree_on_jpeg(self):
        data = _encode(self.rgb, "JPEG")
        via_tf = decode_and_resize(tf.constant(data), 16).numpy()
        via_pil = pil_to_array(Image.open(io.BytesIO(data)), 16)
        self.assertLess(np.abs(via_tf - via_pil).mean(), 1.0)

    def test_output_is_rgb_square_in_0_255_with_aspect_kept(self):
        out = pil_to_array(self.rgb.convert("L"), 16)  # 30x20 -> 16x11, padded left and right
        self.assertEqual(out.shape, (16, 16, 3))
        self.assertEqual(out.dtype, np.float32)
        self.assertTrue((out >= 0).all() and (out <= 255).all())
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        self.assertTrue((out[:, :2] == 0).all() and (out[:, -2:] == 0).all())
        self.assertGreater(out[:, 3:13].mean(), 50)

    def test_arrays_to_input_matches_pil_path(self):
        images, _ = shapes_dataset(3, size=24)
        batch = np.asarray(arrays_to_input(images, 16))
        np.testing.assert_allclose(batch, pil_batch([Image.fromarray(i) for i in images], 16), atol=1e-3)
        gray = np.asarray(arrays_to_input(images[..., 0], 24))
        np.testing.assert_array_equal(gray[..., 2], images[..., 0])

    def test_bad_size_raises(self):
        with self.assertRaisesRegex(ValueError, "image_size=0"):
            pil_to_array(self.rgb, 0)


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

    def test_file_pipeline_reads_pngs_and_jpegs(self):
        images, labels = shapes_dataset(6, size=20)
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, img in enumerate(images):
                path = Path(tmp) / f"{i}.{'png' if i % 2 else 'jpg'}"
                Image.fromarray(img).save(path)
                paths.append(str(path))
            ds = make_dataset(paths, labels, np.arange(6), image_size=16, batch_size=4, shuffle=False, augment=True)
            batches = list(ds)
            self.assertEqual([tuple(x.shape) for x, _ in batches], [(4, 16, 16, 3), (2, 16, 16, 3)])
            np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
            balanced = make_balanced_dataset(paths, labels, np.arange(6), image_size=16, classes_per_batch=2,
                                             per_class=2, augment=False)
            x, y = next(iter(balanced))
            self.assertEqual(tuple(x.shape), (4, 16, 16, 3))
            self.assertEqual(sorted(np.unique(y.numpy(), return_counts=True)[1].tolist()), [2, 2])


class TrainingDecodesWhatInferenceDecodesTests(unittest.TestCase):
    def test_webp_and_cmyk_files_train_with_the_pixels_inference_sees(self):
        from ml.preprocess import file_to_array

        images, labels = shapes_dataset(3, size=20)
        with tempfile.TemporaryDirectory() as tmp:
            paths = [str(Path(tmp) / name) for name in ("a.png", "b.webp", "c.jpg")]
            Image.fromarray(images[0]).save(paths[0])
            Image.fromarray(images[1]).save(paths[1], lossless=True)
            Image.fromarray(images[2]).convert("CMYK").save(paths[2], quality=95)
            x, _ = next(iter(make_dataset(paths, labels, np.arange(3), image_size=16, batch_size=3, shuffle=False,
                                          augment=False)))
            for i, path in enumerate(paths):
                np.testing.assert_allclose(x[i].numpy(), file_to_array(path, 16), atol=1.0, err_msg=path)
