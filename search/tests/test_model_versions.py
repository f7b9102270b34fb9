"""Model versions as search serves them: the training commands (with --activate / --demo) and the
admin's buttons (moved here from ml with the admin)."""

import io
import shutil
from unittest import mock

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import TestCase
from django.urls import reverse

from catalog.models import Product, ProductImage
from catalog.tests.factories import product_create, shape_png
from config.celery import app
from ml.enqueue import MODEL_VERSION_TRAIN
from ml.models import ModelVersion
from ml.tests.test_django_training import purge_queue, queue_length, tiny_catalogue
from search.models import ServingState
from search.serving.versions import model_version_is_active
from search.tests.factories import model_version_create as model_version_create_row
from search.tests.factories import serving_set


class CommandTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        tiny_catalogue()

    def test_train_model_prints_a_final_line_of_metrics_and_evaluate_model_a_table(self):
        out = io.StringIO()
        call_command(
            "train_model",
            "--architecture",
            "classifier",
            "--variant",
            "mlp",
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--dim",
            "8",
            "--batch-size",
            "8",
            stdout=out,
            stderr=io.StringIO(),
        )
        self.assertRegex(out.getvalue(), r"Model version \d+ trained: dim \d+; holdout P@1 \d\.\d{3}")
        version = ModelVersion.objects.get()
        out = io.StringIO()
        call_command("evaluate_model", "--version", str(version.pk), "--k", "3", stdout=out)
        self.assertIn("P@3", out.getvalue())
        self.assertIn("raw pixels (L2)", out.getvalue())

    def test_a_catalogue_too_small_for_a_localiser_trains_without_one_and_says_so(self):
        kept = [p.pk for i, p in enumerate(Product.objects.order_by("pk")) if i % 6 < 3]  # 3 of each shape
        ProductImage.objects.exclude(product__in=kept).delete()  # 9 photos: too few cut-outs
        out = io.StringIO()
        call_command(
            "train_model",
            *("--architecture", "deep_ranking", "--localiser", "on", "--epochs", "1", "--image-size", "16"),
            *("--dim", "8", "--batch-size", "8"),
            stdout=out,
            stderr=io.StringIO(),
        )
        self.assertIn("No item localiser: only", out.getvalue())
        self.assertIn("Photo search finds items against the photo's own background", out.getvalue())
        version = ModelVersion.objects.get()
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED)
        self.assertIsNone(version.metrics["localiser"])
        self.assertIn("at least 12 are needed", version.metrics["localiser_skipped"])

    def test_bad_arguments_get_clear_errors(self):
        with self.assertRaisesMessage(CommandError, "--variant applies to the classifier only"):
            call_command("train_model", "--architecture", "autoencoder", "--variant", "mlp")
        with self.assertRaisesMessage(CommandError, "dim"):
            call_command("train_model", "--dim", "5000")
        with self.assertRaisesMessage(CommandError, "needs ImageNet weights, and nothing is downloaded"):
            call_command(
                "train_model", "--architecture", "deep_ranking", "--backbone", "mobilenet_v2", "--image-size", "32"
            )
        with self.assertRaisesMessage(CommandError, "backbone_weights is not a file"):
            call_command(
                "train_model",
                "--architecture",
                "deep_ranking",
                "--backbone",
                "vgg16",
                "--image-size",
                "32",
                "--backbone-weights",
                "/nonexistent/vgg16.h5",
            )
        with self.assertRaisesMessage(CommandError, "No model version is active"):
            call_command("evaluate_model")
        self.assertFalse(ModelVersion.objects.exists())

    def test_demo_queues_the_default_model_unless_one_is_active_or_on_its_way(self):
        succeeded = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED)
        with self.captureOnCommitCallbacks(execute=False):
            call_command("train_model", "--demo", stdout=io.StringIO())
        queued = ModelVersion.objects.exclude(pk=succeeded.pk).get()
        self.assertTrue(ServingState.objects.get(model_version=queued).auto_activate)
        self.assertEqual(queued.epochs, 2)
        # An interrupted demo (workers stopped mid-training) is queued again, not trained anew.
        out = io.StringIO()
        purge_queue("training")
        self.addCleanup(purge_queue, "training")
        call_command("train_model", "--demo", stdout=out)
        self.assertEqual(queue_length("training"), 1)
        self.assertIn(f"Resuming the training of model version {queued.pk}", out.getvalue())
        self.assertEqual(ModelVersion.objects.count(), 2)
        serving_set(succeeded, is_active=True)
        out = io.StringIO()
        call_command("train_model", "--demo", stdout=out)
        self.assertIn("A model is active", out.getvalue())

    def test_background_queues_a_version_for_a_worker(self):
        out = io.StringIO()
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            call_command("train_model", "--background", "--epochs", "1", stdout=out)
        self.assertIn("Queued model version", out.getvalue())
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(ModelVersion.objects.get().status, ModelVersion.Status.QUEUED)

    def test_framing_can_be_chosen_on_the_command_line_and_in_the_form(self):
        from ml.forms import TrainForm

        with self.captureOnCommitCallbacks(execute=False):
            call_command(
                "train_model", "--background", "--architecture", "classifier", "--framing", "on", stdout=io.StringIO()
            )
        self.assertIs(ModelVersion.objects.get().hparams["framing"], True)  # the classifier's default is off
        form = TrainForm({"architecture": "deep_ranking", "framing": "off"})
        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.overrides(), {"framing": False})
        self.assertFalse(TrainForm({"framing": "maybe"}).is_valid())
        with self.assertRaises(CommandError):
            call_command("train_model", "--framing", "maybe")


class ForegroundTrainingTests(TestCase):
    """The foreground command trains in this process and queues no task for a worker."""

    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        tiny_catalogue()
        purge_queue("training")
        self.addCleanup(purge_queue, "training")

    def test_train_model_in_the_foreground_queues_no_training_task(self):
        with self.captureOnCommitCallbacks(execute=True):
            call_command(
                "train_model",
                "--architecture",
                "classifier",
                "--variant",
                "softmax",
                "--epochs",
                "1",
                "--image-size",
                "16",
                "--dim",
                "8",
                "--batch-size",
                "8",
                stdout=io.StringIO(),
            )
        version = ModelVersion.objects.get()
        self.assertEqual(version.status, ModelVersion.Status.SUCCEEDED, version.error)
        self.assertEqual(queue_length("training"), 0)  # no worker gets a copy to train beside it
        self.assertEqual(version.task_id, "foreground")

    def test_background_still_queues_one_task(self):
        with self.captureOnCommitCallbacks(execute=True):
            call_command("train_model", "--background", "--epochs", "1", stdout=io.StringIO())
        self.assertEqual(queue_length("training"), 1)


class AdminPermissionTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = ModelVersion.objects.create(architecture="classifier", hparams={}, epochs=2)
        cls.staff = User.objects.create_user("staff", password="pw", is_staff=True)
        cls.staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
        cls.manager = User.objects.create_user("manager", password="pw", is_staff=True)
        cls.manager.user_permissions.add(
            *Permission.objects.filter(
                codename__in=[
                    "view_modelversion",
                    "train_modelversion",
                    "cancel_modelversion",
                    "reindex_modelversion",
                    "activate_modelversion",
                ]
            )
        )

    def post(self, user, name, data=None):
        self.client.force_login(user)
        args = [] if name == "train" else [self.version.pk]
        return self.client.post(reverse(f"admin:ml_modelversion_{name}", args=args), data or {})

    def test_staff_without_permissions_cannot_train_reindex_activate_or_cancel(self):
        for name in ("train", "reindex", "activate", "cancel", "delete_vectors"):
            with self.subTest(name):
                self.assertEqual(self.post(self.staff, name, {"architecture": "classifier"}).status_code, 403)
        self.assertEqual(ModelVersion.objects.count(), 1)
        self.version.refresh_from_db()
        self.assertFalse(self.version.cancel_requested)

    def test_a_manager_can_start_training_and_cancel(self):
        # Training is queued for a worker after commit, never run in the web process.
        with mock.patch.object(app, "send_task") as sent, self.captureOnCommitCallbacks(execute=True):
            response = self.post(
                self.manager,
                "train",
                {"architecture": "classifier", "variant": "mlp", "epochs": 1, "precision": "float32"},
            )
        self.assertEqual(response.status_code, 302)
        new = ModelVersion.objects.exclude(pk=self.version.pk).get()
        sent.assert_called_once_with(MODEL_VERSION_TRAIN, args=[new.pk])
        self.assertEqual(new.status, ModelVersion.Status.QUEUED)
        self.assertEqual((new.hparams["variant"], new.hparams["precision"]), ("mlp", "float32"))
        self.assertEqual(self.post(self.manager, "cancel").status_code, 302)
        self.version.refresh_from_db()
        self.assertEqual(self.version.status, ModelVersion.Status.CANCELLED)

    def test_activating_an_untrained_version_is_refused_with_a_message(self):
        response = self.post(self.manager, "activate")
        self.assertEqual(response.status_code, 302)
        self.assertFalse(model_version_is_active(model_version=self.version))
        messages = [str(m) for m in response.wsgi_request._messages]
        self.assertTrue(any("only a succeeded version can be activated" in m for m in messages), messages)

    def test_bad_training_form_input_is_a_400_that_creates_nothing(self):
        self.client.force_login(self.manager)
        response = self.client.post(
            reverse("admin:ml_modelversion_train"), {"architecture": "autoencoder", "variant": "mlp", "dim": 99999}
        )
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "classifier only", status_code=400)
        response = self.client.post(
            reverse("admin:ml_modelversion_train"), {"architecture": "classifier", "precision": "float16"}
        )
        self.assertContains(response, "float16 is not one of the available choices", status_code=400)
        self.assertEqual(ModelVersion.objects.count(), 1)

    def test_deleting_a_version_drops_its_vectors_and_index_but_never_the_active_one(self):
        from search.models import ImageEmbedding

        superuser = User.objects.create_superuser("root", "root@example.com", "pw")
        self.client.force_login(superuser)
        active = model_version_create_row(active=True)
        old = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED)
        product = product_create(images=[shape_png()])
        image = product.images.get()
        ImageEmbedding.objects.create(
            image=image, model_version=old, product=product, category=product.category, embedding=[0.0, 1.0]
        )
        delete = lambda v: self.client.post(reverse("admin:ml_modelversion_delete", args=[v.pk]), {"post": "yes"})  # noqa: E731
        self.assertEqual(delete(active).status_code, 403)
        self.assertEqual(delete(self.version).status_code, 403, "a queued version still has a worker on its way")
        self.assertEqual(delete(old).status_code, 302)
        self.assertFalse(ModelVersion.objects.filter(pk=old.pk).exists())
        self.assertFalse(ImageEmbedding.objects.exists())
        self.assertTrue(model_version_is_active(model_version=active))

    def test_the_change_page_and_live_status_render(self):
        self.client.force_login(self.manager)
        page = self.client.get(reverse("admin:ml_modelversion_change", args=[self.version.pk]))
        self.assertContains(page, "Reindex with this model")
        status = self.client.get(reverse("admin:ml_modelversion_status", args=[self.version.pk])).json()
        self.assertEqual((status["status"], status["epochs"]), ("queued", 2))
