import tempfile
import unittest
from pathlib import Path

import keras
import numpy as np

from ml.architectures import (
    ARCHITECTURES,
    CLASSIFIER_VARIANTS,
    DEFAULT_ARCHITECTURE,
    REGISTRY,
    CatalogueLabels,
    build,
    defaults,
    float32_embedder,
    recommend,
)
from ml.architectures.autoencoder import build_autoencoder
from ml.architectures.classifier import build_classifier
from ml.architectures.deep_ranking import build_deep_ranking
from ml.hparams import HParams
from ml.precision import resolve

SIZE = 16
LABELS = CatalogueLabels(
    categories=np.arange(12) % 4,
    products=np.arange(12) // 2,
    category_names=["a", "b", "c", "d"],
    colours=np.arange(12) // 2 % 3,
)


def _x(n=3, size=SIZE):
    return np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")


class BuildTests(unittest.TestCase):
    def test_every_architecture_gives_embedding_of_dim(self):
        cases = [(a, None) for a in ARCHITECTURES if a != "classifier"] + [
            ("classifier", v) for v in CLASSIFIER_VARIANTS
        ]
        for architecture, variant in cases:
            with self.subTest(architecture=architecture, variant=variant):
                hp = defaults(architecture, variant, image_size=SIZE, dim=12)
                built = build(architecture, hp, LABELS)
                out = built.embedder(_x(), training=False)
                # deep_ranking serves the instance embedding with its category and colour-group parts.
                # (and the item's measured colours: 16 hues x 3 brightnesses + 6 greys)
                expected = {"mlp": hp.hidden_units}.get(
                    variant, 12 + 4 + 3 + 54 if architecture == "deep_ranking" else 12
                )
                self.assertEqual(tuple(out["embedding"].shape), (3, expected))
                self.assertEqual(built.dim, expected)
                self.assertEqual("probabilities" in out, built.has_classifier_head)
                if built.has_classifier_head:
                    self.assertEqual(tuple(out["probabilities"].shape), (3, 4))

    def test_autoencoder_reconstructs_input_shape_and_range(self):
        for size in (16, 28, 32):
            with self.subTest(size=size):
                _, trainer = build_autoencoder(image_size=size, dim=8)
                y = np.asarray(trainer(_x(2, size)))
                self.assertEqual(y.shape, (2, size, size, 3))
                self.assertTrue((y >= 0).all() and (y <= 255).all())

    def test_normalised_embeddings_have_unit_length(self):
        for kwargs in ({}, {"num_classes": 4, "num_colours": 3, "shares": (0.3, 0.2)}):
            model = build_deep_ranking(image_size=SIZE, dim=8, **kwargs)
            norms = np.linalg.norm(np.asarray(model(_x())["embedding"]), axis=1)
            np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
        photo = build_deep_ranking(image_size=48, dim=8)  # the photo-sized branch
        self.assertEqual(tuple(photo(_x(2, 48))["embedding"].shape), (2, 8))

    def test_bad_arguments_raise_value_error_naming_the_value(self):
        with self.assertRaisesRegex(ValueError, "image_size=3"):
            build_classifier(image_size=3, dim=8, num_classes=4)
        with self.assertRaisesRegex(ValueError, "dim=2001"):
            build_deep_ranking(image_size=SIZE, dim=2001)
        with self.assertRaisesRegex(ValueError, "dim=0"):
            build_autoencoder(image_size=SIZE, dim=0)
        with self.assertRaisesRegex(ValueError, "variant='rnn'"):
            build_classifier(image_size=SIZE, dim=8, num_classes=4, variant="rnn")
        with self.assertRaisesRegex(ValueError, "architecture='gan'"):
            build("gan", HParams(), LABELS)

    def test_backbone_without_local_weights_refuses_to_download(self):
        with self.assertRaisesRegex(ValueError, "download.*local weights file"):
            build_deep_ranking(image_size=32, dim=8, backbone="vgg16")
        with self.assertRaisesRegex(ValueError, "backbone_weights='/nonexistent.h5'"):
            build_deep_ranking(image_size=32, dim=8, backbone="mobilenet_v2", backbone_weights="/nonexistent.h5")

    def test_backbone_loads_local_weights_file(self):
        source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "mobilenet_v2.weights.h5"
            source.save_weights(weights)
            model = build_deep_ranking(image_size=32, dim=8, backbone="mobilenet_v2", backbone_weights=str(weights))
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        np.testing.assert_array_equal(
            backbone.get_layer("Conv1").kernel.numpy(), source.get_layer("Conv1").kernel.numpy()
        )
        self.assertEqual(tuple(model(_x(2, 32))["embedding"].shape), (2, 8))

    def test_keras_round_trip_gives_identical_embeddings(self):
        for architecture, variant in [("autoencoder", None), ("classifier", "cnn"), ("deep_ranking", None)]:
            with self.subTest(architecture=architecture):
                built = build(architecture, defaults(architecture, variant, image_size=SIZE, dim=8), LABELS)
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "m.keras"
                    built.embedder.save(path)
                    loaded = keras.models.load_model(path)
                x = _x()
                np.testing.assert_allclose(
                    np.asarray(built.embedder(x, training=False)["embedding"]),
                    np.asarray(loaded(x, training=False)["embedding"]),
                    rtol=1e-6,
                    atol=1e-6,
                )


class PrecisionTests(unittest.TestCase):
    CASES = [("autoencoder", None), ("classifier", "cnn"), ("classifier", "mlp"), ("deep_ranking", None)]

    def test_mixed_bfloat16_computes_in_bfloat16_with_float32_weights_and_outputs(self):
        for architecture, variant in self.CASES:
            with self.subTest(architecture=architecture, variant=variant):
                hp = defaults(architecture, variant, image_size=SIZE, dim=8, precision="mixed_bfloat16")
                built = build(architecture, hp, LABELS)
                self.assertEqual(keras.config.dtype_policy().name, "float32")  # the global policy is restored
                self.assertEqual({w.dtype for w in built.trainer.weights}, {"float32"})
                if variant != "mlp":  # mlp's only hidden layer is its embedding, an output
                    self.assertIn("bfloat16", {layer.compute_dtype for layer in built.trainer.layers})
                outputs = built.embedder(_x(), training=False)
                self.assertEqual({str(v.dtype) for v in outputs.values()}, {"<dtype: 'float32'>"})

    def test_float32_export_matches_the_mixed_precision_model(self):
        for architecture, variant in self.CASES:
            with self.subTest(architecture=architecture, variant=variant):
                hp = defaults(architecture, variant, image_size=SIZE, dim=8, precision="mixed_bfloat16")
                built = build(architecture, hp, LABELS)
                exported = float32_embedder(architecture, hp, built, LABELS)
                self.assertIsNot(exported, built.embedder)
                self.assertEqual({layer.compute_dtype for layer in exported.layers}, {"float32"})
                x = _x()
                mixed = np.asarray(built.embedder(x, training=False)["embedding"])
                full = np.asarray(exported(x, training=False)["embedding"])
                # The same weights; only bfloat16 rounding (8 bits of mantissa) separates the two.
                scale = np.abs(full).max()
                np.testing.assert_allclose(mixed, full, atol=0.05 * scale)
                self.assertGreater(np.abs(full - mixed).max(), 0)  # the bfloat16 model really differs

    def test_float32_runs_export_the_trained_model_itself(self):
        hp = defaults("classifier", "cnn", image_size=SIZE, dim=8, precision="float32")
        built = build("classifier", hp, LABELS)
        self.assertIs(float32_embedder("classifier", hp, built, LABELS), built.embedder)

    def test_precision_is_checked(self):
        self.assertIn(resolve("auto"), ("float32", "mixed_bfloat16"))
        self.assertEqual(resolve("float32"), "float32")
        with self.assertRaisesRegex(ValueError, "precision='float16'"):
            resolve("float16")
        with self.assertRaisesRegex(ValueError, "precision='half'"):
            HParams(precision="half").validate()


class HParamsTests(unittest.TestCase):
    def test_validate_names_bad_value(self):
        with self.assertRaisesRegex(ValueError, "image_size=3"):
            HParams(image_size=3).validate()
        with self.assertRaisesRegex(ValueError, "dim=5000"):
            HParams(dim=5000).validate()
        with self.assertRaisesRegex(ValueError, "eval_fraction=1.5"):
            HParams(eval_fraction=1.5).validate()
        with self.assertRaisesRegex(ValueError, "classes_per_batch=7"):
            defaults("deep_ranking", batch_size=64, classes_per_batch=7, positives="category")
        with self.assertRaisesRegex(ValueError, "batch_size=63"):
            defaults("deep_ranking", batch_size=63)
        with self.assertRaisesRegex(ValueError, "only used by deep_ranking"):
            defaults("classifier", backbone="vgg16")

    def test_dict_round_trip_and_unknown_keys(self):
        hp = defaults("deep_ranking")
        self.assertEqual(HParams.from_dict(hp.to_dict()), hp)
        with self.assertRaisesRegex(ValueError, "colour"):
            HParams.from_dict({"colour": 1})

    def test_defaults_are_valid(self):
        self.assertIn(DEFAULT_ARCHITECTURE, ARCHITECTURES)
        for architecture in ARCHITECTURES:
            REGISTRY[architecture].validate(defaults(architecture))
        for variant in CLASSIFIER_VARIANTS:
            self.assertEqual(defaults("classifier", variant).variant, variant)
        with self.assertRaisesRegex(ValueError, "variant='rnn'"):
            defaults("classifier", "rnn")

    def test_recommendation_follows_the_catalogue(self):
        small_grey = recommend(images=60000, products=60000, median_side=28, grey_share=1.0)
        self.assertEqual((small_grey.architecture, small_grey.overrides["image_size"]), ("classifier", 28))
        photos = recommend(images=3000, products=1000, median_side=480, grey_share=0.05)
        self.assertEqual((photos.architecture, photos.overrides["image_size"]), ("deep_ranking", 64))
        self.assertTrue(photos.overrides["localiser"])
        self.assertNotIn("localiser", small_grey.overrides)
        self.assertIn("photos", photos.reason)


class ItemColoursTests(unittest.TestCase):
    """ml.layers.ItemColours: the measured colour part of a deep_ranking vector."""

    @staticmethod
    def _framed(item, background, size=32):
        image = np.full((1, size, size, 3), background, np.float32)
        image[:, 8:24, 10:22] = item
        return image

    def test_the_item_counts_and_its_background_does_not(self):
        from ml.layers import ItemColours

        layer = ItemColours(space="rgb")
        red_on_white = np.asarray(layer(self._framed((200, 30, 30), (240, 240, 236))))[0]
        red_on_dark = np.asarray(layer(self._framed((200, 30, 30), (30, 40, 60))))[0]
        blue_on_white = np.asarray(layer(self._framed((40, 60, 200), (240, 240, 236))))[0]
        self.assertEqual(red_on_white.shape, (64,))
        self.assertAlmostEqual(float(red_on_white.sum()), 1.0, places=5)
        affinity = lambda a, b: float(np.sqrt(a * b).sum())  # noqa: E731 - Bhattacharyya coefficient
        self.assertGreater(affinity(red_on_white, red_on_dark), 0.98)
        self.assertLess(affinity(red_on_white, blue_on_white), 0.1)
        # Soft cells: a slightly darker red across a cell boundary (192) moves the histogram a little;
        # with hard cells the two would share nothing.
        darker = np.asarray(layer(self._framed((185, 30, 30), (240, 240, 236))))[0]
        self.assertGreater(affinity(red_on_white, darker), 0.9)

    def test_hue_cells_keep_a_shaded_colour_apart_from_its_neighbour(self):
        from ml.layers import ItemColours

        affinity = lambda a, b: float(np.sqrt(a * b).sum())  # noqa: E731
        histograms = {}
        for space in ("rgb", "hue"):
            layer = ItemColours(space=space, hue_bins=12)
            histograms[space] = {
                name: np.asarray(layer(self._framed(rgb, (240, 240, 236))))[0]
                for name, rgb in {
                    "yellow": (232, 200, 40),
                    "yellow in shadow": (144, 124, 25),
                    "orange": (236, 124, 28),
                    "white": (236, 236, 230),
                    "grey": (128, 128, 132),
                    "black": (34, 34, 36),
                }.items()
            }
        rgb, hue = histograms["rgb"], histograms["hue"]
        self.assertEqual(hue["yellow"].shape, (12 * 3 + 6,))
        self.assertAlmostEqual(float(hue["orange"].sum()), 1.0, places=5)
        # Shade scales the channels together: it moves a yellow out of its RGB cell (into none of its
        # own), where its hue stays, so the shaded yellow is nearer the lit one than an orange.
        self.assertLess(affinity(rgb["yellow"], rgb["yellow in shadow"]), 0.05)
        self.assertGreater(affinity(hue["yellow"], hue["yellow in shadow"]), 0.4)
        self.assertGreater(
            affinity(hue["yellow"], hue["yellow in shadow"]), affinity(hue["orange"], hue["yellow in shadow"]) + 0.15
        )
        # Greys have no hue: they fill the brightness cells only, which keep white, grey and black apart.
        self.assertAlmostEqual(float(hue["grey"][-6:].sum()), 1.0, places=3)
        self.assertLess(affinity(hue["white"], hue["grey"]), 0.1)
        self.assertLess(affinity(hue["grey"], hue["black"]), 0.1)

    def test_a_version_saved_before_the_hue_cells_keeps_the_rgb_cells(self):
        from ml.layers import ItemColours

        config = ItemColours(name="item_colours", space="rgb").get_config()
        old = {k: v for k, v in config.items() if k not in ("space", "hue_bins", "value_bins", "grey_bins", "chroma")}
        self.assertEqual(ItemColours.from_config(old).size, 64)
        hue = ItemColours.from_config(ItemColours(space="hue", hue_bins=16).get_config())
        self.assertEqual((hue.space, hue.size), ("hue", 16 * 3 + 6))
        # Saved values win over the defaults: a saved 12-hue layer keeps 12 hues.
        twelve = ItemColours.from_config(ItemColours(space="hue", hue_bins=12).get_config())
        self.assertEqual(twelve.size, 12 * 3 + 6)
        self.assertEqual(ItemColours().get_config()["space"], "hue")
        with self.assertRaisesRegex(ValueError, "space"):
            ItemColours(space="lab")

    def test_served_as_a_part_of_the_deep_ranking_vector(self):
        from ml.layers import vector_parts

        model = build_deep_ranking(image_size=SIZE, dim=8, num_classes=3, shares=(0.3, 0.0), item_colour_share=0.05)
        parts = vector_parts(model)
        self.assertEqual(
            [(p["name"], p["size"]) for p in parts],
            [("instance_embedding", 8), ("probabilities", 3), ("item_colours", 54)],
        )
        self.assertAlmostEqual(parts[2]["share"], 0.05)
        with tempfile.TemporaryDirectory() as tmp:  # the names are saved with the model
            model.save(Path(tmp) / "m.keras")
            self.assertEqual(vector_parts(keras.models.load_model(Path(tmp) / "m.keras")), parts)
        vectors = np.asarray(model(_x(3), training=False)["embedding"])
        self.assertEqual(vectors.shape, (3, 65))
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        with self.assertRaisesRegex(ValueError, "bins"):
            from ml.layers import ItemColours

            ItemColours(bins=1)
