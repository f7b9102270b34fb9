"""The migrations that moved serving state to search and named folders by id keep existing data."""

from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TransactionTestCase

BEFORE = [("ml", "0002_permissions_auto_activate"), ("search", "0003_embedding_field_fast_text")]


class ExistingDataTests(TransactionTestCase):
    def migrate(self, targets):
        executor = MigrationExecutor(connection)
        executor.migrate(targets)
        return MigrationExecutor(connection).loader.project_state(targets).apps

    def tearDown(self):
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    def test_serving_flags_permissions_and_folders_survive_the_move(self):
        apps = self.migrate(BEFORE)
        ModelVersion = apps.get_model("ml", "ModelVersion")
        active = ModelVersion.objects.create(architecture="classifier", status="succeeded", is_active=True)
        auto = ModelVersion.objects.create(architecture="classifier", status="running", auto_activate=True)
        plain = ModelVersion.objects.create(architecture="autoencoder", status="succeeded")
        granted = Permission.objects.filter(codename="activate_modelversion").values_list("pk", flat=True).get()

        apps = self.migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        ServingState = apps.get_model("search", "ServingState")
        self.assertEqual(
            set(ServingState.objects.values_list("model_version_id", "is_active", "auto_activate")),
            {(active.pk, True, False), (auto.pk, False, True)},
        )
        folders = dict(apps.get_model("ml", "ModelVersion").objects.values_list("pk", "artifacts_folder"))
        self.assertEqual(folders, {v.pk: f"version-{v.pk}" for v in (active, auto, plain)})
        moved = Permission.objects.select_related("content_type").get(pk=granted)
        self.assertEqual((moved.content_type.app_label, moved.codename), ("search", "activate_modelversion"))
