"""Training runs through the Django side: records, progress, commands and the admin's buttons."""

import io
import shutil

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings
from django.urls import reverse

from catalog.tests.factories import category_create, product_create, shape_png
from ml.models import ModelVersion
from ml.services import model_version_cancel, model_version_create, model_version_train

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

    def test_a_finished_run_is_not_trained_again(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(architecture="classifier", variant="softmax", overrides={**TINY, "epochs": 1})
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


class CommandTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        tiny_catalogue()

    def test_train_model_prints_a_final_line_of_metrics_and_evaluate_model_a_table(self):
        out = io.StringIO()
        call_command(
            "train_model", "--architecture", "classifier", "--variant", "mlp", "--epochs", "1", "--image-size", "16",
            "--dim", "8", "--batch-size", "8", stdout=out, stderr=io.StringIO(),
        )
        self.assertRegex(out.getvalue(), r"Model version \d+ trained: dim \d+; holdout P@1 \d\.\d{3}")
        version = ModelVersion.objects.get()
        out = io.StringIO()
        call_command("evaluate_model", "--version", str(version.pk), "--k", "3", stdout=out)
        self.assertIn("P@3", out.getvalue())
        self.assertIn("raw pixels (L2)", out.getvalue())

    def test_bad_arguments_get_clear_errors(self):
        with self.assertRaisesMessage(CommandError, "--variant applies to the classifier only"):
            call_command("train_model", "--architecture", "autoencoder", "--variant", "mlp")
        with self.assertRaisesMessage(CommandError, "dim"):
            call_command("train_model", "--dim", "5000")
        with self.assertRaisesMessage(CommandError, "needs ImageNet weights, and nothing is downloaded"):
            call_command("train_model", "--architecture", "deep_ranking", "--backbone", "mobilenet_v2", "--image-size", "32")
        with self.assertRaisesMessage(CommandError, "backbone_weights is not a file"):
            call_command("train_model", "--architecture", "deep_ranking", "--backbone", "vgg16", "--image-size", "32",
                         "--backbone-weights", "/nonexistent/vgg16.h5")
        with self.assertRaisesMessage(CommandError, "No model version is active"):
            call_command("evaluate_model")
        self.assertFalse(ModelVersion.objects.exists())

    def test_demo_queues_the_default_model_unless_one_is_active_or_on_its_way(self):
        succeeded = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED)
        with self.captureOnCommitCallbacks(execute=False):
            call_command("train_model", "--demo", stdout=io.StringIO())
        queued = ModelVersion.objects.exclude(pk=succeeded.pk).get()
        self.assertTrue(queued.auto_activate)
        self.assertEqual(queued.epochs, 2)
        # An interrupted demo (workers stopped mid-training) is queued again, not trained anew.
        out = io.StringIO()
        purge_queue("training")
        self.addCleanup(purge_queue, "training")
        call_command("train_model", "--demo", stdout=out)
        self.assertEqual(queue_length("training"), 1)
        self.assertIn(f"Resuming the training of model version {queued.pk}", out.getvalue())
        self.assertEqual(ModelVersion.objects.count(), 2)
        ModelVersion.objects.filter(pk=succeeded.pk).update(is_active=True)
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


class FashionMnistEvaluationTests(TestCase):
    def setUp(self):
        self.addCleanup(shutil.rmtree, settings.MODELS_ROOT, ignore_errors=True)
        call_command("load_fashion_mnist", limit=300, verbosity=0)

    def test_the_test_split_queries_the_catalogue_and_classifiers_report_accuracy(self):
        with self.captureOnCommitCallbacks(execute=False):
            version = model_version_create(
                architecture="classifier", variant="softmax", overrides={"epochs": 1, "batch_size": 32, "image_size": 28}
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


@override_settings(CELERY_TASK_ALWAYS_EAGER=False)
class AdminPermissionTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = ModelVersion.objects.create(architecture="classifier", hparams={}, epochs=2)
        cls.staff = User.objects.create_user("staff", password="pw", is_staff=True)
        cls.staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
        cls.manager = User.objects.create_user("manager", password="pw", is_staff=True)
        cls.manager.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_modelversion", "train_modelversion", "cancel_modelversion",
                                                      "reindex_modelversion", "activate_modelversion"])
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
        with self.captureOnCommitCallbacks(execute=False):
            response = self.post(self.manager, "train", {"architecture": "classifier", "variant": "mlp", "epochs": 1,
                                                         "precision": "float32"})
        self.assertEqual(response.status_code, 302)
        new = ModelVersion.objects.exclude(pk=self.version.pk).get()
        self.assertEqual((new.hparams["variant"], new.hparams["precision"]), ("mlp", "float32"))
        self.assertEqual(self.post(self.manager, "cancel").status_code, 302)
        self.version.refresh_from_db()
        self.assertEqual(self.version.status, ModelVersion.Status.CANCELLED)

    def test_activating_an_untrained_version_is_refused_with_a_message(self):
        response = self.post(self.manager, "activate")
        self.assertEqual(response.status_code, 302)
        self.version.refresh_from_db()
        self.assertFalse(self.version.is_active)
        messages = [str(m) for m in response.wsgi_request._messages]
        self.assertTrue(any("only a succeeded version can be activated" in m for m in messages), messages)

    def test_bad_training_form_input_is_a_400_that_creates_nothing(self):
        self.client.force_login(self.manager)
        response = self.client.post(reverse("admin:ml_modelversion_train"), {"architecture": "autoencoder", "variant": "mlp", "dim": 99999})
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "classifier only", status_code=400)
        response = self.client.post(reverse("admin:ml_modelversion_train"), {"architecture": "classifier", "precision": "float16"})
        self.assertContains(response, "float16 is not one of the available choices", status_code=400)
        self.assertEqual(ModelVersion.objects.count(), 1)

    def test_deleting_a_version_drops_its_vectors_and_index_but_never_the_active_one(self):
        from search.models import ImageEmbedding

        superuser = User.objects.create_superuser("root", "root@example.com", "pw")
        self.client.force_login(superuser)
        active = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED, is_active=True)
        old = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED)
        product = product_create(images=[shape_png()])
        image = product.images.get()
        ImageEmbedding.objects.create(image=image, model_version=old, product=product, category=product.category, embedding=[0.0, 1.0])
        delete = lambda v: self.client.post(reverse("admin:ml_modelversion_delete", args=[v.pk]), {"post": "yes"})  # noqa: E731
        self.assertEqual(delete(active).status_code, 403)
        self.assertEqual(delete(self.version).status_code, 403, "a queued version still has a worker on its way")
        self.assertEqual(delete(old).status_code, 302)
        self.assertFalse(ModelVersion.objects.filter(pk=old.pk).exists())
        self.assertFalse(ImageEmbedding.objects.exists())
        self.assertTrue(ModelVersion.objects.filter(pk=active.pk, is_active=True).exists())

    def test_the_change_page_and_live_status_render(self):
        self.client.force_login(self.manager)
        page = self.client.get(reverse("admin:ml_modelversion_change", args=[self.version.pk]))
        self.assertContains(page, "Reindex with this model")
        status = self.client.get(reverse("admin:ml_modelversion_status", args=[self.version.pk])).json()
        self.assertEqual((status["status"], status["epochs"]), ("queued", 2))
