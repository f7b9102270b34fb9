import json
import tempfile
import unittest
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from ml.architectures import CatalogueLabels, build, defaults
from ml.inference import Embedder, ModelLoadError
from ml.metrics import retrieval_metrics
from ml.preprocess import Framing, arrays_to_input
from ml.tests import SHAPES, shapes_dataset
from ml.training import train

SIZE = 24


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class _Counter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0
        self.epochs = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def _train(architecture, workdir, images, labels, variant=None, callbacks=(), groups=None, **overrides):
    hp = defaults(
        architecture,
        variant,
        **{
            "image_size": SIZE,
            "dim": 16,
            "batch_size": 32,
            "epochs": 3,
            "eval_fraction": 0.0,
            "augment": False,
            **overrides,
        },
    )
    return train(
        architecture=architecture,
        hparams=hp,
        images=images,
        labels=labels,
        label_names=SHAPES,
        workdir=workdir,
        callbacks=callbacks,
        groups=groups,
    )


class TrainingTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images, cls.labels = shapes_dataset(256, size=SIZE, seed=0)
        cls.queries, cls.query_labels = shapes_dataset(64, size=SIZE, seed=1)
        cls._tmp = tempfile.TemporaryDirectory()
        cls.workdir = Path(cls._tmp.name) / "classifier"
        cls.counter = _Counter()
        # Without framing: framed, these shapes are told apart even by random weights (ml/tests/test_framing.py
        # covers framing); here the model itself must learn where the shape is.
        cls.result = _train(
            "classifier",
            cls.workdir,
            cls.images,
            cls.labels,
            "cnn",
            callbacks=[cls.counter],
            epochs=8,
            eval_fraction=0.25,
            lr=2e-3,
            framing=False,
        )

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _p10(self, embed):
        return retrieval_metrics(
            embed(self.images), self.labels, embed(self.queries), self.query_labels
        ).precision_at_10

    def test_trained_model_retrieves_shapes_better_than_random_weights(self):
        hp = defaults("classifier", "cnn", image_size=SIZE, dim=16)
        keras.utils.set_random_seed(hp.seed)  # the same random weights every run: a fixed baseline
        labels = CatalogueLabels(
            categories=self.labels, products=np.arange(len(self.labels)), category_names=list(SHAPES)
        )
        untrained = build("classifier", hp, labels).embedder
        framing = Embedder.load(self.workdir).framing  # the same input as the trained model's
        random_p10 = self._p10(
            lambda x: np.asarray(untrained(arrays_to_input(x, SIZE, framing), training=False)["embedding"])
        )
        trained_p10 = self._p10(Embedder.load(self.workdir).embed_arrays)
        self.assertGreater(trained_p10, random_p10 + 0.1)

    def test_writes_model_meta_checkpoint_and_tensorboard(self):
        meta = json.loads((self.workdir / "meta.json").read_text())
        self.assertEqual(meta["architecture"], "classifier")
        self.assertEqual((meta["dim"], meta["image_size"], meta["label_names"]), (16, SIZE, list(SHAPES)))
        self.assertTrue(meta["has_classifier_head"])
        self.assertIn(meta["trained_precision"], ("float32", "mixed_bfloat16"))
        exported = keras.models.load_model(self.workdir / "embedder.keras")
        self.assertEqual({layer.compute_dtype for layer in exported.layers}, {"float32"})
        self.assertEqual(self.result.epochs_completed, 8)
        self.assertIsNotNone(self.result.eval_metrics)
        for name in (
            "embedder.keras",
            "checkpoint.keras",
            "state.json",
            "tensorboard/projector_config.pbtxt",
            "tensorboard/projector/tensors.tsv",
            "tensorboard/projector/metadata.tsv",
        ):
            self.assertTrue((self.workdir / name).exists(), name)
        self.assertTrue(list((self.workdir / "tensorboard" / "train").glob("events.out.tfevents.*")))

    def test_caller_callbacks_get_batch_and_epoch_hooks(self):
        self.assertEqual(self.counter.epochs, 8)
        self.assertEqual(self.counter.batches, 8 * int(np.ceil(192 / 32)))

    def test_stopped_run_resumes_from_its_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            first = _train("classifier", tmp, self.images, self.labels, "softmax", callbacks=[_StopAfterFirstEpoch()])
            self.assertFalse(first.completed)
            self.assertEqual(first.epochs_completed, 1)
            self.assertIsNone(first.embedder_path)
            # A checkpoint written before the precision hyperparameter existed resumes as its default.
            state = json.loads((Path(tmp) / "state.json").read_text())
            del state["hparams"]["precision"]
            (Path(tmp) / "state.json").write_text(json.dumps(state))
            counter = _Counter()
            second = _train("classifier", tmp, self.images, self.labels, "softmax", callbacks=[counter])
            self.assertEqual(second.initial_epoch, 1)
            self.assertEqual(counter.epochs, 2)  # epochs 2 and 3 only
            self.assertTrue(second.completed)
            self.assertEqual(len(second.history["loss"]), 3)
            self.assertTrue((Path(tmp) / "embedder.keras").exists())
            with self.assertRaisesRegex(ValueError, "different run"):
                _train("classifier", tmp, self.images, self.labels, "softmax", dim=8)

    def test_autoencoder_training_lowers_the_loss(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = _train("autoencoder", tmp, self.images, self.labels, epochs=3, lr=3e-3)
            loss = result.history["loss"]
            self.assertLess(loss[-1], loss[0])
            self.assertFalse(json.loads((Path(tmp) / "meta.json").read_text())["has_classifier_head"])

    def test_deep_ranking_training_lowers_the_triplet_loss(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = _train(
                "deep_ranking",
                tmp,
                self.images,
                self.labels,
                epochs=3,
                classes_per_batch=4,
                lr=3e-3,
                positives="category",
            )
            loss = result.history["instance_embedding_loss"]
            self.assertLess(loss[-1], loss[0])

    def test_instance_training_finds_a_new_view_of_each_product(self):
        """Products of two photos each: one photo trains, the other (shifted, darker) is held out."""
        rng = np.random.default_rng(5)
        products = 24
        views = []
        for image in self.images[:products]:
            moved = np.roll(image, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
            views.append(np.stack([image, (moved * 0.8).astype(np.uint8), np.flip(image, axis=1)]))
        photos = np.concatenate(views)
        groups = np.repeat(np.arange(products), 3)
        labels = np.repeat(self.labels[:products], 3)
        with tempfile.TemporaryDirectory() as tmp:
            result = _train(
                "deep_ranking",
                tmp,
                photos,
                labels,
                groups=groups,
                epochs=12,
                lr=3e-3,
                batch_size=16,
                augment=True,
                eval_fraction=0.5,
                width=16,
            )
            self.assertEqual(result.holdout["relevance"], "product")
            held = result.holdout["indices"]
            self.assertEqual(len(held), 12)  # half the products give one of their three photos
            trained = set(groups[np.setdiff1d(np.arange(len(photos)), held)].tolist())
            self.assertTrue(set(groups[held].tolist()) <= trained)  # every held-out product also trained
            figures = result.eval_metrics
            self.assertEqual(figures["relevance"], "product")
            chance = 1 / products
            self.assertGreater(figures["precision_at_1"], 10 * chance)
            # The served vector's layout is recorded, for search.queries.weights.
            parts = json.loads(result.meta_path.read_text())["vector_parts"]
            self.assertEqual(parts, result.vector_parts)
            self.assertEqual([p["name"] for p in parts][:2], ["instance_embedding", "probabilities"])
            self.assertEqual(sum(p["size"] for p in parts), result.dim)
            self.assertAlmostEqual(sum(p["share"] for p in parts), 1.0, places=5)

    def test_bad_inputs_raise_value_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "exactly one"):
                train(
                    architecture="classifier",
                    hparams=defaults("classifier"),
                    labels=[0],
                    label_names=SHAPES,
                    workdir=tmp,
                )
            with self.assertRaisesRegex(ValueError, "one label per image"):
                _train("classifier", tmp, self.images, self.labels[:10])


class InferenceTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.workdir = Path(cls._tmp.name)
        cls.images, cls.labels = shapes_dataset(64, size=SIZE, seed=2)
        _train("classifier", cls.workdir, cls.images, cls.labels, "softmax", epochs=2)
        cls.embedder = Embedder.load(cls.workdir)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _png_files(self, folder: str, n: int) -> list[Path]:
        """The first n test images as PNG files in a folder of the class's temporary directory."""
        files = Path(self._tmp.name) / folder
        files.mkdir(exist_ok=True)
        paths = [files / f"{i}.png" for i in range(n)]
        for path, image in zip(paths, self.images, strict=False):
            Image.fromarray(image).save(path)
        return paths

    def test_corrupt_file_is_reported_and_the_rest_embed(self):
        paths = self._png_files("files", 3)
        files = paths[0].parent
        (files / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        paths.insert(1, files / "bad.jpg")
        paths.append(files / "missing.png")
        vectors, failures = self.embedder.embed_files(paths, batch_size=2)
        self.assertEqual(sorted(failures), [1, 4])
        self.assertTrue(all(isinstance(reason, str) and reason for reason in failures.values()))
        self.assertEqual(vectors.shape, (5, self.embedder.dim))
        np.testing.assert_allclose(vectors[[0, 2, 3]], self.embedder.embed_arrays(self.images[:3]), atol=1e-4)

    def test_pngs_at_the_model_size_decode_in_the_graph_to_the_contract_vectors(self):
        import dataclasses

        from ml.preprocess import bytes_to_input, png_as_is

        # Without framing, an 8-bit PNG of the model's size is its own input: TensorFlow decodes it in
        # the model's graph; every other file goes the whole way through the contract, in one call.
        unframed = dataclasses.replace(
            self.embedder, meta=json.loads(json.dumps({**self.embedder.meta, "framing": None}))
        )
        folder = Path(self._tmp.name) / "as-is"
        folder.mkdir(exist_ok=True)
        files = {
            "rgb.png": Image.fromarray(self.images[0]),
            "grey.png": Image.fromarray(self.images[1]).convert("L"),
            "rgba.png": Image.fromarray(self.images[2]).convert("RGBA"),
            "large.png": Image.fromarray(self.images[3]).resize((2 * SIZE, 2 * SIZE)),
        }
        for name, image in files.items():
            image.save(folder / name)
        good = (folder / "rgb.png").read_bytes()
        at = good.index(b"IDAT") + 10
        (folder / "damaged.png").write_bytes(good[:at] + bytes(b ^ 0x5A for b in good[at : at + 8]) + good[at + 8 :])
        names = ["rgb.png", "damaged.png", "rgba.png", "grey.png", "large.png"]
        paths = [folder / name for name in names]
        self.assertEqual(
            [png_as_is(p.read_bytes(), SIZE, unframed.framing) for p in paths], [True, True, False, True, False]
        )
        for chunk in (8, 2):  # the damaged file with good ones in one graph call, then with one other
            vectors, failures = unframed.embed_files(paths, batch_size=8, chunk=chunk)
            self.assertEqual(sorted(failures), [1])
            self.assertIn("damaged", failures[1])  # the contract's reason, as at import
            contract = unframed._predict(
                np.stack([bytes_to_input(paths[i].read_bytes(), SIZE, unframed.framing) for i in (0, 2, 3, 4)]), 8
            )["embedding"]
            np.testing.assert_allclose(vectors[[0, 2, 3, 4]], contract, atol=1e-5)
        self.assertIsNotNone(unframed._forward_png)
        vectors, failures = unframed.embed_files(paths[:1], batch_size=8)
        np.testing.assert_allclose(vectors[0], contract[0], atol=1e-5)

    def test_files_decoded_while_the_model_runs_give_the_vectors_of_one_pass(self):
        paths = self._png_files("prefetch", 7)
        paths.insert(3, paths[0].parent / "missing.png")
        whole, whole_failures = self.embedder.embed_files(paths, batch_size=8, chunk=8)
        parts, part_failures = self.embedder.embed_files(
            paths, batch_size=8, chunk=3
        )  # 3 + 3 + 2, the miss in the middle
        self.assertEqual(sorted(whole_failures), [3])
        self.assertEqual(part_failures, whole_failures)
        np.testing.assert_allclose(parts, whole, atol=1e-5)
        np.testing.assert_array_equal(parts[3], 0)

    def test_pil_and_array_paths_agree_and_guess_a_category(self):
        img = Image.fromarray(self.images[0])
        np.testing.assert_allclose(
            self.embedder.embed_pil(img), self.embedder.embed_arrays(self.images[:1])[0], atol=1e-4
        )
        self.assertIsInstance(self.embedder.framing, Framing)
        label, probability = self.embedder.guess_category(img)
        self.assertIn(label, SHAPES)
        self.assertTrue(0.0 <= probability <= 1.0)

    def test_flip_averaging_gives_an_image_and_its_mirror_one_vector(self):
        import dataclasses
        import json

        # Right-angled triangles: a mirror image differs even once framing has centred them.
        yy, xx = np.mgrid[:SIZE, :SIZE]
        triangles = np.zeros((4, SIZE, SIZE, 3), np.uint8)
        for i in range(4):
            triangles[i][(yy > xx + i) & (yy < SIZE - 3)] = (200, 60 * i, 40)
        mirrored = triangles[:, :, ::-1]
        plain = self.embedder.embed_arrays(triangles)
        self.assertFalse(np.allclose(plain, self.embedder.embed_arrays(mirrored), atol=1e-3))
        meta = {**self.embedder.meta, "flip_average": True}
        averaging = dataclasses.replace(self.embedder, meta=json.loads(json.dumps(meta)))
        vectors = averaging.embed_arrays(triangles)
        np.testing.assert_allclose(vectors, averaging.embed_arrays(mirrored), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        label, _ = averaging.guess_category(Image.fromarray(self.images[0]))
        self.assertIn(label, SHAPES)

    def test_missing_or_corrupt_model_raises_model_load_error(self):
        with self.assertRaisesRegex(ModelLoadError, "file not found"):
            Embedder.load(Path(self._tmp.name) / "nowhere")
        broken = Path(self._tmp.name) / "broken"
        broken.mkdir(exist_ok=True)
        (broken / "embedder.keras").write_bytes(b"not a zip")
        (broken / "meta.json").write_text((self.workdir / "meta.json").read_text())
        with self.assertRaises(ModelLoadError) as caught:
            Embedder.load(broken)
        self.assertIn("broken", str(caught.exception))
