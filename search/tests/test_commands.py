"""CLI parity with the admin: reindex, activate_model and model_versions, refusing what the admin
refuses with the admin's message, and exiting non-zero."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from urllib.parse import quote

from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test import TestCase, TransactionTestCase, override_settings
from django.urls import reverse

from config.celery import app
from ml.models import ModelVersion
from search.models import ImageEmbedding, IndexJob
from search.serving.versions import model_version_is_active

from .factories import (
    COLORS,
    SHAPES,
    embedding_put,
    model_version_create,
    product_create,
    serving_set,
    shape_png,
)
from .tiny_model import tiny_model_version


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class AdminMessageMixin:
    def admin_error(self, name: str, pk: int, data: dict | None = None) -> str:
        admin = get_user_model().objects.filter(is_superuser=True).first() or get_user_model().objects.create_superuser(
            "cli-admin", "cli@example.com", "pw"
        )
        self.client.force_login(admin)
        response = self.client.post(reverse(f"admin:ml_modelversion_{name}", args=[pk]), data or {})
        errors = [m.message for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
        self.assertEqual(len(errors), 1, errors)
        return errors[0]


class ActivateModelTests(AdminMessageMixin, TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.product = product_create(images=[shape_png(), shape_png("circle")])
        cls.version = model_version_create(dim=3)
        embedding_put(image=cls.product.images.first(), model_version=cls.version, vector=[1, 0, 0])

    def test_incomplete_coverage_is_refused_with_the_admins_message(self):
        with self.assertRaises(CommandError) as refused:
            run("activate_model", str(self.version.pk))
        self.assertEqual(refused.exception.returncode, 1)
        self.assertIn("has vectors for 1 of 2 images", str(refused.exception))
        self.assertEqual(str(refused.exception), self.admin_error("activate", self.version.pk))
        self.assertFalse(model_version_is_active(model_version=self.version))

    def test_force_activates(self):
        out, _ = run("activate_model", str(self.version.pk), "--force")
        self.assertIn(f"Model version #{self.version.pk} is now active", out)
        self.assertTrue(model_version_is_active(model_version=self.version))

    def test_a_failed_version_is_refused_even_with_force(self):
        failed = model_version_create(status=ModelVersion.Status.FAILED)
        with self.assertRaises(CommandError) as refused:
            run("activate_model", str(failed.pk), "--force")
        self.assertIn("only a succeeded version can be activated", str(refused.exception))
        self.assertEqual(str(refused.exception), self.admin_error("activate", failed.pk, {"force": "1"}))

    def test_unknown_version(self):
        with self.assertRaisesMessage(CommandError, "There is no model version #999999."):
            run("activate_model", "999999")


class ReindexTests(AdminMessageMixin, TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.products = [product_create() for _ in range(3)]
        cls.version = model_version_create(dim=3)

    def test_queues_a_job_for_a_named_version(self):
        out, _ = run("reindex", "--model-version", str(self.version.pk))
        job = IndexJob.objects.get(model_version=self.version)
        self.assertEqual((job.total, job.status), (3, IndexJob.Status.RUNNING))
        self.assertIn(f"Reindex job #{job.pk} started: 3 images in 1 batches.", out)

    def test_only_missing_and_the_active_version_by_default(self):
        embedding_put(image=self.products[0].images.get(), model_version=self.version, vector=[0, 0, 1])
        serving_set(self.version, is_active=True)
        run("reindex", "--only-missing")
        self.assertEqual(IndexJob.objects.get(model_version=self.version).total, 2)

    def test_a_version_that_did_not_succeed_is_refused_with_the_admins_message(self):
        running = model_version_create(status=ModelVersion.Status.RUNNING)
        with self.assertRaises(CommandError) as refused:
            run("reindex", "--model-version", str(running.pk))
        self.assertIn("Only a succeeded model version can be indexed", str(refused.exception))
        self.assertEqual(str(refused.exception), self.admin_error("reindex", running.pk))
        self.assertFalse(IndexJob.objects.filter(model_version=running).exists())

    def test_no_active_version_and_none_named(self):
        with self.assertRaisesMessage(CommandError, "No model version is active: name one with --model-version N."):
            run("reindex")

    def test_wait_times_out_without_workers(self):
        with self.assertRaises(CommandError) as gave_up:
            run("reindex", "--model-version", str(self.version.pk), "--wait", "--timeout", "0.3", "--poll", "0.1")
        self.assertIn("it goes on on the workers", str(gave_up.exception))


class ModelVersionsTableTests(TestCase):
    def test_table_lists_versions_with_metrics_coverage_and_active(self):
        product = product_create(images=[shape_png(), shape_png("circle")])
        active = model_version_create(
            active=True,
            hparams={"variant": "cnn"},
            metrics={"holdout": {"model": {"precision_at_1": 0.9321, "precision_at_10": 0.9}}},
        )
        embedding_put(image=product.images.first(), model_version=active, vector=[1, 0, 0])
        failed = model_version_create(status=ModelVersion.Status.FAILED, architecture="autoencoder")
        out, _ = run("model_versions")
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["id", "architecture", "status", "P@1", "P@10", "coverage", "active"])
        self.assertEqual(lines[1].split()[:3], [str(failed.pk), "autoencoder", "failed"])
        self.assertTrue(lines[1].rstrip().endswith("—"))  # no coverage, not active
        row = lines[2]
        for text in (
            str(active.pk),
            "classifier (cnn)",
            "succeeded",
            "0.932",
            "0.900",
            "50% (1 + 0 unreadable of 2)",
            "yes",
        ):
            self.assertIn(text, row)

    def test_no_versions(self):
        self.assertIn("No model versions yet", run("model_versions")[0])


def _close_worker_connections(**kwargs) -> None:
    connections.close_all()


def _purge(queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


@override_settings(EMBEDDING_BATCH_SIZE=3)
class ReindexWaitWithWorkerTests(TransactionTestCase):
    """`reindex --wait` against a real Celery worker consuming from Redis."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _purge("embeddings")
        task_postrun.connect(_close_worker_connections, weak=False)
        cls.worker = start_worker(app, queues=["embeddings"], perform_ping_check=False, pool="solo", loglevel="WARNING")
        cls.worker.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.worker.__exit__(None, None, None)
        task_postrun.disconnect(_close_worker_connections)
        super().tearDownClass()

    def test_wait_shows_progress_and_returns_when_done(self):
        version = tiny_model_version()
        for s in SHAPES:
            for c in COLORS[:2]:
                product_create(images=[shape_png(s, color=c)])
        started = time.monotonic()
        out, err = run("reindex", "--model-version", str(version.pk), "--wait", "--timeout", "120", "--poll", "0.2")
        self.assertLess(time.monotonic() - started, 120)
        self.assertIn("8/8", err)  # tqdm's bar reached the end
        self.assertIn("done: 8 embedded, 0 unreadable", out)
        self.assertEqual(ImageEmbedding.objects.filter(model_version=version).count(), 8)
        out, _ = run("activate_model", str(version.pk))
        self.assertIn("is now active", out)


class ExitStatusTests(TransactionTestCase):
    """The real `manage.py` process, on the test database: a refusal exits 1 with the message on stderr."""

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        params = connection.get_connection_params()  # the test database, as this process reaches it
        auth = f"{quote(params.get('user', ''))}:{quote(str(params.get('password', '')))}"
        host = params.get("host", "")
        if host.startswith("/"):  # a Unix socket folder (the embedded server)
            test_url = f"postgresql://{auth}@/{params['dbname']}?host={quote(host)}"
        else:
            test_url = f"postgresql://{auth}@{host}:{params.get('port', 5432)}/{params['dbname']}"
        env = {**os.environ, "DATABASE_URL": test_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_refusals_exit_non_zero_and_success_exits_zero(self):
        failed = model_version_create(status=ModelVersion.Status.FAILED)
        refused = self.manage("activate_model", str(failed.pk))
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn(
            f"Model version #{failed.pk} has status “Failed”; only a succeeded version can be activated.",
            refused.stderr,
        )
        listed = self.manage("model_versions")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("failed", listed.stdout)
