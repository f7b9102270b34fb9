"""Training budgets (ml.budget): what they accept, what they refuse before a run starts, and runs
that train for one (steps or wall time), stop and resume."""

import io
import json
import shutil
import tempfile
import unittest
from collections import namedtuple
from pathlib import Path
from unittest import mock

import keras
import numpy as np
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from catalog.tests.factories import category_create, product_create, shape_png
from ml import budget as budgets
from ml.architectures import defaults
from ml.models import ModelVersion
from ml.tests import SHAPES, shapes_dataset
from ml.training import train


class ParseTests(unittest.TestCase):
    def test_steps_wall_time_and_auto(self):
        self.assertEqual(budgets.parse("20000steps"), budgets.Budget("steps", 20000.0, "20000steps"))
        self.assertEqual(budgets.parse(" 500 step ").value, 500)
        self.assertEqual(budgets.parse("30m").value, 1800)
        self.assertEqual(budgets.parse("2h").value, 7200)
        self.assertEqual(budgets.parse("1.5h").value, 5400)
        self.assertEqual(budgets.parse("90s").kind, "seconds")
        self.assertEqual(budgets.parse("AUTO").kind, "auto")
        self.assertIsNone(budgets.parse(""))
        self.assertIsNone(budgets.parse(None))

    def test_unreadable_or_too_small_budgets_say_why(self):
        for text, message in (
            ("fast", "number of steps"),
            ("10 epochs", "number of steps"),
            ("-5m", "number of steps"),
            ("12.5steps", "whole number"),
            ("50steps", "too small"),
            ("30s", "too small"),
        ):
            with self.assertRaisesRegex(budgets.BudgetError, message, msg=text):
                budgets.parse(text)

    def test_auto_grows_with_the_square_root_of_the_products(self):
        self.assertEqual(budgets.auto_steps(1000), budgets.AUTO_STEPS_AT_1K)
        self.assertAlmostEqual(budgets.auto_steps(20000) / budgets.auto_steps(5000), 2.0, places=2)
        self.assertEqual(budgets.auto_steps(10), budgets.AUTO_MIN_STEPS)
        self.assertEqual(budgets.auto_steps(10**9), budgets.AUTO_MAX_STEPS)

    def test_a_step_budget_must_show_each_product_twice(self):
        budget = budgets.parse("1000steps")
        budgets.check_for_catalogue(budget, products=32000, products_per_step=64)  # exactly twice each
        with self.assertRaisesRegex(budgets.BudgetError, r"at least 2000 steps"):
            budgets.check_for_catalogue(budget, products=64000, products_per_step=64)
        budgets.check_for_catalogue(budgets.parse("30m"), products=10**6, products_per_step=64)  # no step count

    def test_plan_chunks_a_budget_into_whole_checkpoint_intervals(self):
        self.assertEqual(budgets.plan(budgets.parse("1000steps"), 1000, 16), (16, 1008))
        self.assertEqual(budgets.plan(budgets.parse("1000steps"), 50000, 782), (250, 1000))
        chunk, planned = budgets.plan(budgets.parse("30m"), 1000, 16)
        self.assertEqual((chunk, planned), (16, budgets.AUTO_STEPS_AT_1K))


SIZE = 16


def _hp(**overrides):
    return defaults(
        "deep_ranking",
        **{
            "image_size": SIZE,
            "dim": 8,
            "batch_size": 16,
            "eval_fraction": 0.0,
            "augment": False,
            "framing": False,
            "width": 8,
            "colour_weight": 0.0,
            **overrides,
        },
    )


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.used = 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.used.append(logs["budget_used"])


class BudgetTrainingTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images, cls.labels = shapes_dataset(96, size=SIZE, seed=0)
        cls.products = np.arange(96) // 2  # 48 products of two photos

    def _train(self, workdir, hp, callbacks=()):
        return train(
            architecture="deep_ranking",
            hparams=hp,
            images=self.images,
            labels=self.labels,
            label_names=SHAPES,
            groups=self.products,
            workdir=workdir,
            callbacks=callbacks,
        )

    def test_a_step_budget_trains_that_many_steps_and_resumes_when_stopped(self):
        with tempfile.TemporaryDirectory() as tmp:
            hp = _hp(budget="120steps")  # 48 products, 8 per step: chunks of 6 steps
            first = self._train(tmp, hp, callbacks=[_StopAfterFirstEpoch()])
            self.assertFalse(first.completed)
            self.assertEqual((first.steps_done, first.budget["steps"]), (6, 6))
            counter = _Steps()
            second = self._train(tmp, hp, callbacks=[counter])
            self.assertTrue(second.completed)
            self.assertEqual(second.initial_epoch, 1)
            self.assertEqual(counter.steps, 114)  # the rest of the 120, not 120 again
            self.assertEqual(second.budget["steps"], 120)
            self.assertEqual(counter.used[-1], 1.0)
            self.assertTrue(all(a < b for a, b in zip(counter.used, counter.used[1:])))
            meta = json.loads((Path(tmp) / "meta.json").read_text())
            self.assertEqual((meta["steps_done"], meta["budget"]["text"]), (120, "120steps"))
            self.assertLess(second.history["loss"][-1], second.history["loss"][0])
            # A larger budget continues the finished run from its checkpoint.
            more = self._train(tmp, hp.replace(budget="180steps"))
            self.assertEqual((more.initial_epoch, more.steps_done), (20, 180))

    def test_a_wall_time_budget_stops_when_another_chunk_would_overrun_it(self):
        # 12 s instead of the smallest budget people may give (a minute): the stopping rule is the same.
        with tempfile.TemporaryDirectory() as tmp, mock.patch.object(budgets, "MIN_SECONDS", 10):
            result = self._train(tmp, _hp(budget="12s"))
            self.assertTrue(result.completed)
            self.assertEqual(result.budget["used"], 1.0)
            # Not before its time: it stops once less than half a chunk's (mean) time is left.
            per_chunk = result.train_seconds / result.epochs_completed
            self.assertGreaterEqual(result.train_seconds, 12 - 0.5 * per_chunk)
            self.assertGreater(result.epochs_completed, 2)
            # The schedule was re-planned to end where the run ended.
            self.assertEqual(result.budget["planned_steps"], result.steps_done)
            self.assertEqual(len(result.history["loss"]), result.epochs_completed)
            self.assertTrue((Path(tmp) / "embedder.keras").exists())


def _catalogue(products: int) -> None:
    colours = {"square": (230, 40, 40), "circle": (40, 200, 60), "triangle": (50, 80, 240)}
    categories = {shape: category_create(shape.title()) for shape in colours}
    for i in range(products):
        shape = list(colours)[i % 3]
        product_create(
            category=categories[shape], images=[shape_png(shape, color=colours[shape], size=16, offset=i % 3 - 1)]
        )


class TrainModelBudgetTests(TestCase):
    def setUp(self):
        # A models folder of its own: "nothing was written" must not see other tests' shared models.
        root = tempfile.mkdtemp(prefix="lookalike-models-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        self.enterContext(override_settings(MODELS_ROOT=root))

    def test_train_model_trains_for_a_step_budget_and_reports_it(self):
        _catalogue(36)  # 32 training images in batches of 4: checkpoints every 8 steps
        out = io.StringIO()
        call_command(
            "train_model",
            "--architecture",
            "classifier",
            "--variant",
            "cnn",
            "--budget",
            "100steps",
            "--image-size",
            "16",
            "--dim",
            "8",
            "--batch-size",
            "4",
            stdout=out,
        )
        version = ModelVersion.objects.get()
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertEqual(version.hparams["budget"], "100steps")
        self.assertEqual(version.metrics["budget"]["steps"], version.metrics["steps"])
        self.assertGreaterEqual(version.metrics["steps"], 100)
        self.assertEqual(version.epoch, version.epochs)  # progress: the whole budget used
        self.assertEqual(version.metrics["budget_used"], 1.0)
        self.assertGreater(version.metrics["peak_rss_mib"], 100)
        self.assertIn("Budget 100steps", out.getvalue())

    def test_a_budget_too_small_for_the_catalogue_is_refused_and_nothing_is_written(self):
        _catalogue(120)  # deep ranking, batch 2: one product a step, 240 steps to see each twice
        with self.assertRaisesRegex(CommandError, r"too few to learn them: give at least 240 steps"):
            call_command(
                "train_model",
                "--architecture",
                "deep_ranking",
                "--budget",
                "100steps",
                "--batch-size",
                "2",
                stdout=io.StringIO(),
            )
        with self.assertRaisesRegex(CommandError, "too small to learn anything"):
            call_command("train_model", "--budget", "20s", stdout=io.StringIO())
        self.assertFalse(ModelVersion.objects.exists())
        self.assertFalse(Path(settings.MODELS_ROOT).exists() and any(Path(settings.MODELS_ROOT).iterdir()))

    @override_settings(TRAINING_IN_MEMORY_BYTES=0)
    def test_a_cache_that_will_not_fit_the_disk_is_refused_and_nothing_is_written(self):
        _catalogue(6)
        usage = namedtuple("usage", "total used free")
        with (
            mock.patch("ml.budget.shutil.disk_usage", return_value=usage(10**9, 10**9 - 2**20, 2**20)),
            self.assertRaisesRegex(CommandError, r"GiB free .* free some space"),
        ):
            call_command("train_model", "--architecture", "classifier", "--image-size", "64", stdout=io.StringIO())
        self.assertFalse(ModelVersion.objects.exists())
        self.assertFalse(Path(settings.MODELS_ROOT).exists() and any(Path(settings.MODELS_ROOT).iterdir()))

    def test_the_admin_form_takes_a_budget_and_explains_a_bad_one(self):
        from search.admin.forms import TrainServeForm

        form = TrainServeForm({"budget": "2H", "auto_activate": "on"})
        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.overrides()["budget"], "2h")
        form = TrainServeForm({"budget": "a while"})
        self.assertFalse(form.is_valid())
        self.assertIn("wall time", form.errors["budget"][0])
