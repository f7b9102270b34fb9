"""Which version serves moves from ml's ModelVersion (is_active, auto_activate) to search's
ServingState, with the rows that had either flag and the reindex/activate permissions (and who
holds them). ml.0005 then drops the old columns; it runs after this one."""

import django.db.models.deletion
from django.db import migrations, models

PERMISSIONS = ("reindex_modelversion", "activate_modelversion")


def serving_state_copy(apps, schema_editor):
    ModelVersion = apps.get_model("ml", "ModelVersion")
    ServingState = apps.get_model("search", "ServingState")
    ServingState.objects.bulk_create(
        ServingState(model_version_id=pk, is_active=active, auto_activate=auto)
        for pk, active, auto in ModelVersion.objects.filter(
            models.Q(is_active=True) | models.Q(auto_activate=True)
        ).values_list("pk", "is_active", "auto_activate")
    )
    _permissions_move(apps, ("ml", "modelversion"), ("search", "servingstate"))


def serving_state_copy_back(apps, schema_editor):
    ModelVersion = apps.get_model("ml", "ModelVersion")
    ServingState = apps.get_model("search", "ServingState")
    for state in ServingState.objects.all():
        ModelVersion.objects.filter(pk=state.model_version_id).update(
            is_active=state.is_active, auto_activate=state.auto_activate
        )
    _permissions_move(apps, ("search", "servingstate"), ("ml", "modelversion"))


def _permissions_move(apps, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    old = ContentType.objects.filter(app_label=source[0], model=source[1]).first()
    if old is None:  # a fresh database: post_migrate creates the permissions where they belong
        return
    new, _ = ContentType.objects.get_or_create(app_label=target[0], model=target[1])
    Permission.objects.filter(content_type=old, codename__in=PERMISSIONS).update(content_type=new)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("ml", "0004_artifacts_folder_unique"),
        ("search", "0003_embedding_field_fast_text"),
    ]

    operations = [
        migrations.CreateModel(
            name="ServingState",
            fields=[
                (
                    "model_version",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="serving",
                        serialize=False,
                        to="ml.modelversion",
                    ),
                ),
                ("is_active", models.BooleanField(default=False)),
                (
                    "auto_activate",
                    models.BooleanField(
                        default=False,
                        help_text="Index the catalogue after training and activate when the vectors cover it.",
                    ),
                ),
            ],
            options={
                "permissions": [
                    ("reindex_modelversion", "Can reindex the catalogue with a model"),
                    ("activate_modelversion", "Can activate a model for search"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("is_active", True)), fields=("is_active",), name="one_serving_model_version"
                    )
                ],
            },
        ),
        migrations.RunPython(serving_state_copy, serving_state_copy_back),
    ]
