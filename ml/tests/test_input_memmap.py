"""Training input read from a memory-mapped cache: every image arrives with its own label.

Each image is one flat colour whose red value is its product, so a batch's images can be checked
against the labels that came with it, on the memory-mapped path (forced with in_memory_bytes=0)
as on the in-memory one.
"""

import json
import tempfile
import unittest
from pathlib import Path

import keras
import numpy as np

from ml.colour import colour_histograms
from ml.input import Augment, decode_once, make_balanced_dataset, make_dataset
from ml.preprocess import Framing
from ml.training import train

SIZE = 16
UNFRAMED = Framing(enabled=False)
N_PRODUCTS, PHOTOS = 40, 3


def _catalogue():
    """uint8 images [n, SIZE, SIZE, 3]: red = product, green = photo of it; products per image."""
    products = np.repeat(np.arange(N_PRODUCTS), PHOTOS)
    photos = np.tile(np.arange(PHOTOS), N_PRODUCTS)
    images = np.zeros((len(products), SIZE, SIZE, 3), np.uint8)
    images[..., 0] = (products * 5 + 20)[:, None, None]
    images[..., 1] = (photos * 60 + 30)[:, None, None]
    images[..., 2] = 128
    return images, products


def _product_of(x: np.ndarray) -> np.ndarray:
    return np.round((x[:, SIZE // 2, SIZE // 2, 0] - 20) / 5).astype(np.int64)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class _Interrupt(Exception):
    pass


class MemoryMappedInputTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images, cls.products = _catalogue()
        cls._tmp = tempfile.TemporaryDirectory()
        cls.tmp = Path(cls._tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _framed(self, folder, in_memory_bytes=0):
        return decode_once(
            self.images, image_size=SIZE, framing=UNFRAMED, cache_dir=folder, in_memory_bytes=in_memory_bytes
        )

    def _assert_aligned(self, dataset, batches=6):
        seen = 0
        for x, y in dataset.take(batches):
            x = x.numpy()
            np.testing.assert_array_equal(_product_of(x), y["product"].numpy())
            seen += len(x)
        self.assertGreater(seen, 0)

    def test_small_limit_memory_maps_the_cache(self):
        framed = self._framed(self.tmp / "mapped")
        self.assertIsInstance(framed.images, np.memmap)
        self.assertTrue(list((self.tmp / "mapped").glob("*-images.npy")))
        in_memory = self._framed(self.tmp / "not-mapped", in_memory_bytes=2**30)
        self.assertNotIsInstance(in_memory.images, np.memmap)
        np.testing.assert_array_equal(np.asarray(framed.images), in_memory.images)

    def test_balanced_batches_from_a_memory_map_keep_images_and_labels_together(self):
        framed = self._framed(self.tmp / "balanced")
        idx = np.arange(len(self.products))
        ds = make_balanced_dataset(
            framed,
            {"product": self.products},
            self.products,
            idx,
            classes_per_batch=8,
            per_class=2,
            augment=Augment(),
            seed=3,
            min_per_class=1,
        )
        self._assert_aligned(ds)

    def test_shuffled_batches_from_a_memory_map_keep_images_and_labels_together(self):
        framed = self._framed(self.tmp / "shuffled")
        ds = make_dataset(
            framed, {"product": self.products}, np.arange(len(self.products))[::-1], batch_size=16, shuffle=True, seed=5
        )
        self._assert_aligned(ds, batches=8)

    def test_colour_histograms_read_the_rows_asked_for_from_a_memory_map(self):
        framed = self._framed(self.tmp / "colour")
        rows = np.array([7, 3, 3, 100, 0])
        np.testing.assert_allclose(
            colour_histograms(framed.images, framed.masks, rows),
            colour_histograms(np.asarray(framed.images)[rows], np.asarray(framed.masks)[rows]),
        )

    def test_a_decode_interrupted_half_way_is_decoded_again_not_reused(self):
        folder = self.tmp / "interrupted"

        def stop_half_way(done, total):
            if done >= total // 2:
                raise _Interrupt()

        with self.assertRaises(_Interrupt):
            decode_once(
                self.images,
                image_size=SIZE,
                framing=UNFRAMED,
                cache_dir=folder,
                in_memory_bytes=0,
                progress=stop_half_way,
            )
        self.assertFalse(list(folder.glob("*.done")))
        framed = self._framed(folder)
        np.testing.assert_array_equal(_product_of(np.asarray(framed.images)), self.products)
        ds = make_dataset(
            framed, {"product": self.products}, np.arange(len(self.products)), batch_size=16, shuffle=True, seed=1
        )
        self._assert_aligned(ds, batches=8)

    def test_a_stopped_run_on_a_memory_mapped_cache_resumes_with_the_same_alignment(self):
        from ml.architectures import defaults

        workdir = self.tmp / "run"
        hp = defaults(
            "deep_ranking",
            image_size=SIZE,
            dim=8,
            batch_size=16,
            epochs=2,
            eval_fraction=0.0,
            augment=False,
            framing=False,
            width=8,
            colour_weight=0.0,
        )
        labels = self.products % 4
        kwargs = {
            "architecture": "deep_ranking",
            "hparams": hp,
            "images": self.images,
            "labels": labels,
            "label_names": ["a", "b", "c", "d"],
            "groups": self.products,
            "workdir": workdir,
            "in_memory_bytes": 0,
        }
        first = train(callbacks=[_StopAfterFirstEpoch()], **kwargs)
        self.assertFalse(first.completed)
        self.assertTrue(list((workdir / "cache").glob("*.done")))
        # The resumed run reads the cache the first one wrote (read-only map), aligned as before.
        reused = self._framed(workdir / "cache")
        self.assertEqual(reused.images.mode, "r")
        ds = make_balanced_dataset(
            reused,
            {"product": self.products},
            self.products,
            np.arange(len(self.products)),
            classes_per_batch=8,
            per_class=2,
            augment=Augment(),
            seed=hp.seed + 1,
            min_per_class=1,
        )
        self._assert_aligned(ds)
        second = train(**kwargs)
        self.assertTrue(second.completed)
        self.assertEqual(second.initial_epoch, 1)
        self.assertGreater(second.peak_rss_bytes, 0)
        self.assertGreater(json.loads((workdir / "meta.json").read_text())["peak_rss_mib"], 0)


if __name__ == "__main__":
    unittest.main()
