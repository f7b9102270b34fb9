"""GPU workers (ml.workers): a worker refuses to start when a GPU is required and none is usable,
every worker's device is recorded for the admin, and indexing batches follow the workers' device."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse

from ml import workers
from ml.devices import ComputeDevice
from search.indexing.jobs import index_job_cancel, index_job_start

from .factories import model_version_create, product_create, shape_png
from .processes import ROOT, child_env

GPU = ComputeDevice(
    kind="GPU",
    name="NVIDIA L4",
    compute_capability="8.9",
    gpus=1,
    precision="mixed_float16",
    embedding_batch_size=1024,
    tensorflow="2.21.0",
    built_with_cuda=True,
)
CPU = ComputeDevice(
    kind="CPU",
    name="AMD EPYC x 2",
    compute_capability=None,
    gpus=0,
    precision="float32",
    embedding_batch_size=256,
    tensorflow="2.21.0",
    built_with_cuda=True,
    note="no NVIDIA device",
)


class RegistryTestCase(TestCase):
    def setUp(self):
        cache.delete(workers.REGISTRY_KEY)
        self.addCleanup(cache.delete, workers.REGISTRY_KEY)


class RefusalTests(TestCase):
    def test_a_worker_that_requires_a_gpu_exits_with_the_reason_on_a_machine_without_one(self):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "embeddings",
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"gpu-{uuid.uuid4().hex[:8]}@%h",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=child_env(WORKER_REQUIRE_GPU="1", LOG_LEVEL="INFO"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, workers.EXIT_NO_GPU, output)
        self.assertIn("refuses to start: WORKER_REQUIRE_GPU=1 but no GPU is usable", output)
        self.assertIn("embeds and trains on CPU", output)  # the start-up line every worker logs
        self.assertNotIn("ready.", output)  # it never consumed


class RegistryTests(RegistryTestCase):
    def sender(self, hostname: str, queues=("embeddings",)):
        return SimpleNamespace(
            hostname=hostname,
            app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={q: None for q in queues}))),
        )

    def test_a_started_worker_records_its_device_and_a_stopped_one_is_removed(self):
        sender = self.sender("embeddings@box-1")
        workers.on_worker_init(sender=sender)  # this test process has TensorFlow: detected in-process
        workers.on_worker_ready(sender=sender)
        self.addCleanup(workers.on_worker_shutdown)
        [row] = workers.worker_devices()
        self.assertEqual(
            (row.hostname, row.queues, row.device.kind, row.alive), ("embeddings@box-1", ["embeddings"], "CPU", True)
        )

        staff = get_user_model().objects.create_superuser("boss", "", "a-long-test-password")
        self.client.force_login(staff)
        page = self.client.get(reverse("admin:ml_modelversion_dashboard"))
        self.assertContains(page, "embeddings@box-1")
        self.assertContains(page, f"<strong>CPU</strong> {row.device.name}")

        workers.on_worker_shutdown()
        self.assertEqual(workers.worker_devices(), [])
        self.assertContains(
            self.client.get(reverse("admin:ml_modelversion_dashboard")), "No worker has reported its device"
        )

    def test_a_worker_not_seen_for_three_heartbeats_is_shown_as_gone(self):
        workers.worker_device_record(hostname="training@box-2", queues=["training"], device=GPU)
        registry = cache.get(workers.REGISTRY_KEY)
        registry["training@box-2"]["seen_at"] = time.time() - workers.STALE_AFTER - 1
        cache.set(workers.REGISTRY_KEY, registry)
        [row] = workers.worker_devices()
        self.assertFalse(row.alive)
        self.assertIn("GPU NVIDIA L4, compute capability 8.9", row.describe)

    def test_the_version_page_says_what_it_trained_on(self):
        version = model_version_create(metrics={"trained_on": {**GPU.to_dict(), "trained_precision": "mixed_float16"}})
        staff = get_user_model().objects.create_superuser("boss", "", "a-long-test-password")
        self.client.force_login(staff)
        page = self.client.get(reverse("admin:ml_modelversion_change", args=[version.pk]))
        self.assertContains(
            page, "Trained on <strong>GPU</strong> NVIDIA L4 (compute capability 8.9), precision mixed_float16"
        )


@override_settings(EMBEDDING_BATCH_SIZE=2, EMBEDDING_BATCH_SIZE_GPU=3)
class BatchSizeTests(RegistryTestCase):
    def start(self) -> list[int]:
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=self.version)
        index_job_cancel(job=job)  # so the next start makes a job of its own (a start joins a running one)
        return [len(b.image_ids) for b in job.batches.order_by("number")]

    def setUp(self):
        super().setUp()
        self.version = model_version_create(dim=3)
        for _ in range(6):
            product_create(images=[shape_png("circle")])

    def test_batches_grow_when_every_embeddings_worker_has_a_gpu(self):
        self.assertEqual(self.start(), [2, 2, 2])  # no worker reported: the CPU size
        workers.worker_device_record(hostname="embeddings@gpu-1", queues=["embeddings"], device=GPU)
        workers.worker_device_record(hostname="training@cpu-1", queues=["training"], device=CPU)  # not indexing
        self.assertEqual(self.start(), [3, 3])
        workers.worker_device_record(hostname="embeddings@cpu-2", queues=["embeddings"], device=CPU)
        self.assertEqual(self.start(), [2, 2, 2])  # a CPU worker takes batches too: sized for it
