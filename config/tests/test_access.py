"""Who may train, reindex, activate and cancel, and read progress: staff with the permission, only."""

from __future__ import annotations

from unittest import mock

from django.contrib.auth.models import Permission, User
from django.test import Client, TestCase
from django.urls import reverse

from config.celery import app
from ml.enqueue import MODEL_VERSION_TRAIN
from ml.models import ModelVersion
from search.indexing.enqueue import INDEX_BATCH
from search.models import IndexJob
from search.serving.versions import model_version_is_active
from search.tests.factories import model_version_create, product_with_vectors

ACTIONS = ("reindex", "activate", "cancel", "delete_vectors")


def user_with(name: str, *codenames: str, staff: bool = True) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


class ModelVersionActionAccessTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=3)
        product_with_vectors(model_version=cls.version, vectors=[[0, 0, 1]])
        cls.queued = ModelVersion.objects.create(architecture="classifier", hparams={}, epochs=2)

    def post(self, user, action, pk=None, client=None):
        client = client or Client()
        if user is not None:
            client.force_login(user)
        name = f"admin:ml_modelversion_{action}"
        return client.post(
            reverse(name, args=[] if action == "train" else [pk or self.version.pk]), {"architecture": "classifier"}
        )

    def assertNothingChanged(self):
        self.assertEqual(ModelVersion.objects.count(), 2)
        self.assertFalse(ModelVersion.objects.filter(serving__is_active=True).exists())
        self.assertFalse(ModelVersion.objects.filter(cancel_requested=True).exists())
        self.assertFalse(IndexJob.objects.exists())
        self.assertEqual(self.version.embeddings.count(), 1)

    def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(self):
        everything = [
            "view_modelversion",
            "train_modelversion",
            "reindex_modelversion",
            "activate_modelversion",
            "cancel_modelversion",
        ]
        for user in (None, user_with("customer", *everything, staff=False)):
            for action in ("train", *ACTIONS):
                with self.subTest(user=user and user.username, action=action):
                    response = self.post(user, action)
                    self.assertEqual(response.status_code, 302)
                    self.assertIn(reverse("admin:login"), response["Location"])
        self.assertNothingChanged()

    def test_each_action_needs_its_own_permission(self):
        needs = {
            "train": "train",
            "reindex": "reindex",
            "delete_vectors": "reindex",
            "activate": "activate",
            "cancel": "cancel",
        }
        for permission in ("train", "reindex", "activate", "cancel"):
            user = user_with(f"only-{permission}", "view_modelversion", f"{permission}_modelversion")
            for action, required in needs.items():
                if required == permission:
                    continue
                with self.subTest(permission=permission, action=action):
                    self.assertEqual(self.post(user, action).status_code, 403)
        self.assertNothingChanged()

    def test_each_permission_allows_its_action(self):
        # The actions queue work for the workers (after commit) and run none of it here.
        with mock.patch.object(app, "send_task") as sent, self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.post(user_with("r", "reindex_modelversion"), "reindex").status_code, 302)
        job = IndexJob.objects.get(model_version=self.version)
        self.assertEqual(
            [(c.args, c.kwargs) for c in sent.call_args_list],
            [((INDEX_BATCH,), {"args": [pk]}) for pk in job.batches.values_list("pk", flat=True)],
        )
        self.assertEqual((job.status, job.batches_done), (IndexJob.Status.RUNNING, 0))
        self.assertEqual(self.post(user_with("c", "cancel_modelversion"), "cancel").status_code, 302)
        self.assertEqual(IndexJob.objects.get().status, IndexJob.Status.CANCELLED)
        self.assertEqual(self.post(user_with("a", "activate_modelversion"), "activate").status_code, 302)
        self.assertTrue(model_version_is_active(model_version=self.version))
        with mock.patch.object(app, "send_task") as sent, self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.post(user_with("t", "train_modelversion"), "train").status_code, 302)
        self.assertEqual(ModelVersion.objects.count(), 3)
        trained = ModelVersion.objects.latest("pk")
        sent.assert_called_once_with(MODEL_VERSION_TRAIN, args=[trained.pk])
        self.assertEqual(trained.status, ModelVersion.Status.QUEUED)  # queued for a worker, not trained here

    def test_actions_need_post_and_a_csrf_token(self):
        manager = User.objects.create_superuser("root", "root@example.com", "pw")
        client = Client()
        client.force_login(manager)
        for action in ACTIONS:
            with self.subTest(action):
                self.assertEqual(
                    client.get(reverse(f"admin:ml_modelversion_{action}", args=[self.version.pk])).status_code, 405
                )
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(manager)
        for action in ACTIONS:
            with self.subTest(action, csrf=True):
                self.assertEqual(
                    strict.post(reverse(f"admin:ml_modelversion_{action}", args=[self.version.pk])).status_code, 403
                )
        self.assertNothingChanged()

    def test_model_version_status_needs_the_view_permission(self):
        url = reverse("admin:ml_modelversion_status", args=[self.version.pk])
        client = Client()
        self.assertEqual(client.get(url).status_code, 302)  # anonymous: login
        client.force_login(user_with("nobody", staff=True))
        self.assertEqual(client.get(url).status_code, 403)
        client.force_login(user_with("viewer", "view_modelversion"))
        response = client.get(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["id"], self.version.pk)


class IndexJobAdminAccessTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        version = model_version_create(dim=3)
        cls.job = IndexJob.objects.create(model_version=version, status=IndexJob.Status.RUNNING, total=10, done=4)

    def test_status_endpoint_needs_staff_and_the_view_permission(self):
        url = reverse("admin:search_indexjob_status", args=[self.job.pk])
        client = Client()
        self.assertEqual(client.get(url).status_code, 302)
        client.force_login(user_with("customer", "view_indexjob", staff=False))
        self.assertEqual(client.get(url).status_code, 302)
        client.force_login(user_with("nobody"))
        self.assertEqual(client.get(url).status_code, 403)
        client.force_login(user_with("viewer", "view_indexjob"))
        response = client.get(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual((response.json()["done"], response.json()["total"]), (4, 10))

    def test_jobs_cannot_be_added_edited_or_deleted_by_hand_without_permission(self):
        client = Client()
        client.force_login(user_with("viewer", "view_indexjob"))
        self.assertEqual(client.get(reverse("admin:search_indexjob_changelist")).status_code, 200)
        self.assertEqual(client.get(reverse("admin:search_indexjob_add")).status_code, 403)
        change = client.post(reverse("admin:search_indexjob_change", args=[self.job.pk]), {"status": "done"})
        self.assertIn(change.status_code, (302, 403))
        self.assertEqual(
            client.post(reverse("admin:search_indexjob_delete", args=[self.job.pk]), {"post": "yes"}).status_code, 403
        )
        self.job.refresh_from_db()
        self.assertEqual(self.job.status, IndexJob.Status.RUNNING)
        root = User.objects.create_superuser("root", "root@example.com", "pw")
        client.force_login(root)
        self.assertEqual(client.get(reverse("admin:search_indexjob_add")).status_code, 403)  # even for superusers
