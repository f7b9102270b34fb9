"""Training runs through the Django side: records, progress, evaluation."""

import io
import shutil

from django.conf import settings
from django.core.management import call_command
from django.test import TestCase

from catalog.tests.factories import category_create, product_create, shape_png
from ml.models import ModelVersion
from ml.services import (
    TrainingError,
    model_version_cancel,
    model_version_create,
    model_version_evaluate,
    model_version_train,
)


def queue_length(name: str) -> int:
    """Messages waiting on a queue of the real (test) broker."""
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(name, passive=False, durable=True).message_count


def purge_queue(name: str) -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(name)


TINY = {"epochs": 2, "image_size": 16, "dim": 8, "batch_size": 8}


def tiny_catalogue() -> None:
    colors = {"square": (230, 40, 40), "circle": (40, 200, 60), "triangle": (50, 80, 240)}
    for shape, color in colors.items():
        category = category_create(shape.title())
        for i in range(6):
            product_create(category=category, images=[shape_png(shape, color=color, size=16, offset=i % 3 - 1)])


class TrainingRunTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        tiny_catalogue()

    def test_a_run_trains_records_progress_and_evaluates(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(architecture="classifier", variant="cnn", overrides=TINY)
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertEqual((version.epoch, version.epochs, version.dim), (2, 2, 8))
        self.assertEqual([row["epoch"] for row in version.loss_history], [1, 2])
        self.assertGreater(version.steps_per_epoch, 0)
        self.assertEqual(version.label_names, ["Square", "Circle", "Triangle"])
        holdout = version.metrics["holdout"]
        self.assertGreater(holdout["queries"], 0)
        for figures in (holdout["model"], holdout["pixels"]):
            self.assertTrue(0.0 <= figures["precision_at_1"] <= 1.0)
        self.assertTrue((version.workdir / "embedder.keras").exists())

    def test_the_holdout_is_recorded_and_products_added_later_never_join_it(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(
                architecture="classifier", variant="softmax", overrides={**TINY, "epochs": 1, "eval_fraction": 0.3}
            )
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        split = version.metrics["split"]
        held = set(split["image_ids"])
        self.assertTrue(held)
        before = version.metrics["holdout"]["queries"]
        self.assertEqual(before, len(held))
        # Products imported after training: before the fix the split was recomputed over the
        # catalogue, so they (and images that trained) could fall into the holdout.
        for i in range(6):
            product_create(category=category_create("Square"), images=[shape_png("circle", size=16, offset=i % 3 - 1)])
        figures = model_version_evaluate(model_version=version, queries="holdout")
        self.assertEqual(figures["queries"], before)
        self.assertEqual(set(ModelVersion.objects.get(pk=version.pk).metrics["split"]["image_ids"]), held)

    def test_eval_fraction_zero_means_no_holdout_and_says_so(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(
                architecture="classifier", variant="softmax", overrides={**TINY, "epochs": 1, "eval_fraction": 0.0}
            )
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertEqual(version.metrics["split"]["image_ids"], [])
        self.assertIn("No holdout", version.metrics["holdout"]["note"])
        self.assertNotIn("model", version.metrics["holdout"])
        with self.assertRaisesRegex(TrainingError, "no holdout"):
            model_version_evaluate(model_version=version, queries="holdout")

    def test_a_finished_run_is_not_trained_again(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(
                architecture="classifier", variant="softmax", overrides={**TINY, "epochs": 1}
            )
        model_version_train(model_version=version)
        finished_at = ModelVersion.objects.get(pk=version.pk).finished_at
        again = model_version_train(model_version=version)
        self.assertEqual(again.finished_at, finished_at)

    def test_cancelling_a_queued_run_stops_it_before_it_starts(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(architecture="autoencoder", overrides=TINY)
        model_version_cancel(model_version=version)
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.CANCELLED)
        self.assertFalse(version.workdir.exists())

    def test_training_an_empty_catalogue_fails_with_a_reason(self):
        from catalog.models import Product

        Product.objects.all().delete()
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(architecture="classifier", overrides=TINY)
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.FAILED)
        self.assertIn("import a catalogue first", version.error)

    def test_bad_hyperparameters_are_refused_before_anything_is_recorded(self):
        with self.assertRaisesMessage(ValueError, "image_size=3"):
            model_version_create(architecture="classifier", overrides={"image_size": 3})
        self.assertFalse(ModelVersion.objects.exists())


class FashionMnistEvaluationTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        call_command("load_fashion_mnist", limit=300, verbosity=0)

    def test_the_test_split_queries_the_catalogue_and_classifiers_report_accuracy(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(
                architecture="classifier",
                variant="softmax",
                overrides={"epochs": 1, "batch_size": 32, "image_size": 28},
            )
        version = model_version_train(model_version=version)
        out = io.StringIO()
        call_command("evaluate_model", "--version", str(version.pk), "--queries", "fashion-mnist-test", stdout=out)
        self.assertIn("10000 queries against 300 catalogue images", out.getvalue())
        figures = ModelVersion.objects.get(pk=version.pk).metrics["fashion-mnist-test"]
        self.assertEqual(figures["queries"], 10000)
        # Even one epoch on 300 images guesses far better than chance (0.1) on 10 categories.
        self.assertGreater(figures["accuracy"], 0.3)
        self.assertGreater(figures["pixels"]["precision_at_1"], 0.5)
