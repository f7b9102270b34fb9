"""A version trains once: a second claimant backs off, a run stopped early never succeeds without its
model file, and the task retries a database outage. (That the foreground train_model command queues
nothing is tested with the command, in search/tests/test_model_versions.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.db import OperationalError
from django.test import TestCase, TransactionTestCase

from ml.claims import model_version_claim, model_version_claimed
from ml.models import ModelVersion
from ml.services import model_version_create, model_version_train
from ml.tasks import model_version_train_task
from search.tests.processes import ROOT, child_env, wait_for

from .test_django_training import TINY, tiny_catalogue


class EarlyStopTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        tiny_catalogue()

    def test_a_run_stopped_early_by_a_callback_fails_without_a_model_file(self):
        import keras

        class StopAfterFirstEpoch(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = True  # as EarlyStopping or TerminateOnNaN would

        version = model_version_create(
            architecture="classifier", variant="softmax", overrides={**TINY, "epochs": 3}, enqueue=False
        )
        version = model_version_train(model_version=version, extra_callbacks=(StopAfterFirstEpoch(),))
        self.assertEqual(version.status, ModelVersion.Status.FAILED)
        self.assertIn("stopped after 1 of 3 epochs", version.error)
        self.assertFalse((version.workdir / "embedder.keras").exists())

    def test_a_cancel_during_the_run_ends_cancelled(self):
        import keras

        class CancelInFirstEpoch(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                ModelVersion.objects.filter(pk=version.pk).update(cancel_requested=True)
                self.model.stop_training = True

        version = model_version_create(architecture="classifier", variant="softmax", overrides=TINY, enqueue=False)
        version = model_version_train(model_version=version, extra_callbacks=(CancelInFirstEpoch(),))
        self.assertEqual(version.status, ModelVersion.Status.CANCELLED)


class TrainingTaskRetryTests(TestCase):
    def test_the_task_retries_when_the_database_is_unreachable(self):
        version = model_version_create(architecture="classifier", variant="softmax", overrides=TINY, enqueue=False)
        calls = []

        def flaky(*, model_version):
            calls.append(model_version.pk)
            if len(calls) == 1:
                raise OperationalError("server closed the connection unexpectedly")
            return ModelVersion.objects.get(pk=model_version.pk)

        with mock.patch("ml.services.model_version_train", side_effect=flaky):
            result = model_version_train_task.apply(args=[version.pk])
        self.assertEqual(result.get(), ModelVersion.Status.QUEUED)
        self.assertEqual(calls, [version.pk, version.pk])


class TrainingClaimTests(TransactionTestCase):
    CHILD = """
import os, time, django
django.setup()
import keras
from ml.models import ModelVersion
from ml.services import model_version_train

class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        with open(os.environ["PROGRESS"], "a") as f:
            f.write(f"{batch}\\n")
        time.sleep(0.5)

model_version_train(model_version=ModelVersion.objects.get(pk=int(os.environ["VERSION"])), extra_callbacks=(Slow(),))
"""

    def test_a_second_claimant_backs_off_while_a_run_is_live_and_resumes_it_once_the_claimant_died(self):
        import keras

        tiny_catalogue()
        version = model_version_create(
            architecture="classifier", variant="mlp", overrides={**TINY, "epochs": 3, "batch_size": 4}, enqueue=False
        )
        shutil.rmtree(version.workdir, ignore_errors=True)
        self.addCleanup(shutil.rmtree, version.workdir, ignore_errors=True)
        progress = Path(tempfile.mkdtemp()) / "progress"
        self.addCleanup(shutil.rmtree, progress.parent)
        child = subprocess.Popen(
            [sys.executable, "-c", self.CHILD],
            cwd=ROOT,
            env=child_env(VERSION=str(version.pk), PROGRESS=str(progress)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.addCleanup(lambda: child.poll() is None and os.killpg(child.pid, signal.SIGKILL))

        def training():
            if child.poll() is not None:
                raise AssertionError(child.stdout.read().decode(errors="replace")[-3000:])
            return progress.exists()

        wait_for(training, timeout=120, what="the first claimant to start training")
        self.assertTrue(model_version_claimed(model_version_id=version.pk))

        class Started(keras.callbacks.Callback):
            began = False

            def on_train_begin(self, logs=None):
                Started.began = True

        started = time.monotonic()
        second = model_version_train(model_version=version, extra_callbacks=(Started(),))
        self.assertFalse(Started.began)  # it backed off: no second run into the same folder
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(second.status, ModelVersion.Status.RUNNING)
        self.assertIsNone(child.poll())  # the first run goes on

        os.killpg(child.pid, signal.SIGKILL)  # the claimant dies: its connection, and so its claim, ends
        child.wait(timeout=10)
        wait_for(lambda: not model_version_claimed(model_version_id=version.pk), timeout=10, what="the claim to end")
        version = model_version_train(model_version=version)
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertTrue((version.workdir / "embedder.keras").exists())

    def test_the_claim_is_exclusive_and_ends_with_its_block(self):
        version = model_version_create(architecture="classifier", overrides=TINY, enqueue=False)
        with model_version_claim(model_version_id=version.pk) as first:
            self.assertTrue(first)
            with model_version_claim(model_version_id=version.pk) as second:
                self.assertFalse(second)
            self.assertTrue(model_version_claimed(model_version_id=version.pk))
        self.assertFalse(model_version_claimed(model_version_id=version.pk))
