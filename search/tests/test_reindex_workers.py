"""`reindex --wait` and the admin's Reindex button say at once when no embeddings worker has been
seen lately (ml.workers' registry, the dashboard's Workers card), and how to start one."""

from __future__ import annotations

import io
import time

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse

from ml import workers

from .factories import model_version_create, product_create
from .test_commands import run


class NoWorkerTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.products = [product_create() for _ in range(2)]
        cls.version = model_version_create(dim=3)

    def setUp(self):
        cache.delete(workers.REGISTRY_KEY)
        self.addCleanup(cache.delete, workers.REGISTRY_KEY)

    def reindex_wait(self) -> tuple[str, float]:
        started = time.monotonic()
        with self.assertRaises(CommandError) as gave_up:
            run("reindex", "--model-version", str(self.version.pk), "--wait", "--timeout", "1", "--poll", "0.1")
        self.assertIn("it goes on on the workers", str(gave_up.exception))  # exit status 1
        return str(gave_up.exception), time.monotonic() - started

    def test_wait_says_no_embeddings_worker_was_seen_and_how_to_start_one(self):
        message, _ = self.reindex_wait()
        self.assertIn("No embeddings worker has been seen", message)
        self.assertIn("make worker", message)

    def test_a_worker_last_seen_long_ago_counts_as_none_and_a_training_worker_does_not_count(self):
        workers.worker_device_record(hostname="embeddings@old", queues=["embeddings"], device=None)
        registry = cache.get(workers.REGISTRY_KEY)
        registry["embeddings@old"]["seen_at"] = time.time() - 3600
        cache.set(workers.REGISTRY_KEY, registry)
        workers.worker_device_record(hostname="training@box", queues=["training"], device=None)
        message, _ = self.reindex_wait()
        self.assertIn("No embeddings worker has been seen", message)
        self.assertIn("embeddings@old", message)  # the one that went quiet, and when

    def test_with_a_live_embeddings_worker_nothing_is_said(self):
        workers.worker_device_record(hostname="embeddings@box", queues=["embeddings"], device=None)
        message, _ = self.reindex_wait()
        self.assertNotIn("No embeddings worker", message)

    def test_the_warning_comes_as_the_wait_starts(self):
        err = io.StringIO()
        with self.assertRaises(CommandError):
            call_command(
                "reindex",
                "--model-version",
                str(self.version.pk),
                "--wait",
                "--timeout",
                "0.5",
                "--poll",
                "0.1",
                stdout=io.StringIO(),
                stderr=err,
            )
        err = err.getvalue()
        self.assertIn("No embeddings worker has been seen", err)
        self.assertLess(err.index("No embeddings worker"), err.index("job #"), err)  # before the progress bar

    def test_the_admins_reindex_warns_too(self):
        admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        self.client.force_login(admin)
        response = self.client.post(reverse("admin:ml_modelversion_reindex", args=[self.version.pk]))
        warnings = [m.message for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("No embeddings worker has been seen", warnings[0])
        self.assertIn("make worker", warnings[0])
