"""Concurrency on the real services: 16 searches during a reindex run by a real worker, and
activations racing in the admin and at the service."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, LiveServerTestCase, TransactionTestCase, override_settings
from django.urls import reverse

from ml.models import ModelVersion
from search.indexing.jobs import index_job_start
from search.models import ImageEmbedding, IndexJob, ServingState
from search.serving.activation import model_version_activate

from .factories import image_bytes, index_and_activate, model_version_create, product_with_vectors, shape_image
from .processes import PrivateBrokerMixin
from .tiny_model import tiny_model_version


@override_settings(EMBEDDING_BATCH_SIZE=2)
class ConcurrencyTests(PrivateBrokerMixin, LiveServerTestCase):
    def test_16_concurrent_searches_during_a_reindex_see_no_errors(self):
        active = tiny_model_version()
        images = self.catalogue(12)
        # Indexed here rather than by the worker (the messages it also sent are no-ops by then).
        index_and_activate(active)
        worker = self.worker(CELERY_VISIBILITY_TIMEOUT="30")
        candidate = tiny_model_version()
        photo = image_bytes(shape_image("circle", size=20))
        boundary = "lookalike-boundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + photo
            + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n3\r\n--{boundary}--\r\n'.encode()
        )
        results: list[tuple[int, int | None, str, bool]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(17)
        job_finished = threading.Event()
        product_url = f"{self.live_server_url}/api/products/{images[0].product_id}/similar?k=3"

        def search(n: int) -> tuple[int, dict]:
            if n % 2 == 0:
                request = urllib.request.Request(
                    f"{self.live_server_url}/api/search",
                    data=body,
                    method="POST",
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
            else:
                request = urllib.request.Request(product_url)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, {"error": exc.read().decode(errors="replace")[:300]}
            except Exception as exc:  # noqa: BLE001 - a refused or reset connection is an error too
                return 0, {"error": repr(exc)}

        def client(n: int):
            barrier.wait(timeout=30)
            rounds = 0
            # Until the reindex is over (at least twice, at most 40 times per client).
            while rounds < 2 or (not job_finished.is_set() and rounds < 40):
                during = not job_finished.is_set()
                status, payload = search(n + rounds)
                with lock:
                    results.append((status, payload.get("model_version"), payload.get("error", ""), during))
                rounds += 1

        self.assertEqual(search(0)[0], 200)  # the web process loads the active model once
        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        job = index_job_start(model_version=candidate)
        barrier.wait(timeout=30)
        self.wait_job(job, 120, worker)
        job_finished.set()
        for thread in threads:
            thread.join(timeout=120)
        self.assertEqual(job.status, IndexJob.Status.DONE)
        self.assertGreaterEqual(len(results), 32)
        self.assertGreaterEqual(sum(1 for r in results if r[3]), 16)  # searches while the job ran
        self.assertEqual([r for r in results if r[0] != 200], [])
        self.assertEqual({r[1] for r in results}, {active.pk})  # the new version serves nothing until activated


class ConcurrentActivationTests(TransactionTestCase):
    def test_two_admins_activating_different_versions_at_once_leave_exactly_one_active(self):
        a, b = model_version_create(dim=3), model_version_create(dim=3)
        for version in (a, b):
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SUCCEEDED)
        product = product_with_vectors(model_version=a, vectors=[[0, 0, 1]])
        image = product.images.get()
        ImageEmbedding.objects.create(
            image=image,
            model_version=b,
            product=product,
            category_id=product.category_id,
            price=product.price,
            embedding=[1, 0, 0],
        )
        admins = []
        for name in ("alice", "bob"):
            user = User.objects.create_superuser(name, f"{name}@example.com", "pw")
            client = Client()
            client.force_login(user)
            admins.append(client)
        for round_ in range(6):
            barrier = threading.Barrier(2)
            statuses = []

            def activate(client: Client, version: ModelVersion, barrier=barrier, statuses=statuses):
                barrier.wait(timeout=10)
                try:
                    statuses.append(
                        client.post(reverse("admin:ml_modelversion_activate", args=[version.pk])).status_code
                    )
                finally:
                    connection.close()

            order = [(admins[0], a), (admins[1], b)] if round_ % 2 else [(admins[0], b), (admins[1], a)]
            threads = [threading.Thread(target=activate, args=pair) for pair in order]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            self.assertEqual(statuses, [302, 302])
            self.assertEqual(ModelVersion.objects.filter(serving__is_active=True).count(), 1)
        active = ModelVersion.objects.get(serving__is_active=True)
        self.assertIn(active.pk, (a.pk, b.pk))

    def test_racing_activations_at_the_service_never_fail_or_leave_two_active(self):
        versions = [model_version_create(dim=3) for _ in range(2)]
        for round_ in range(10):
            ServingState.objects.update(is_active=False)
            barrier = threading.Barrier(2)
            errors = []

            def activate(version: ModelVersion, barrier=barrier, errors=errors):
                barrier.wait(timeout=10)
                try:
                    model_version_activate(model_version=version, force=True)
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    errors.append(repr(exc))
                finally:
                    connection.close()

            threads = [threading.Thread(target=activate, args=(v,)) for v in versions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            self.assertEqual(errors, [], f"round {round_}")
            self.assertEqual(ModelVersion.objects.filter(serving__is_active=True).count(), 1)
