"""A version's folder is named by a unique id on its row, not by its primary key: a recreated
database (or a second one sharing MODELS_ROOT) no longer finds another run's checkpoint.

Existing rows keep the folder they have, version-<id>; new rows get a random hex id.
"""

from django.db import migrations, models


def existing_folders_keep_their_names(apps, schema_editor):
    ModelVersion = apps.get_model("ml", "ModelVersion")
    for version in ModelVersion.objects.only("pk").iterator():
        ModelVersion.objects.filter(pk=version.pk).update(artifacts_folder=f"version-{version.pk}")


class Migration(migrations.Migration):
    dependencies = [
        ("ml", "0002_permissions_auto_activate"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="artifacts_folder",
            field=models.CharField(max_length=64, null=True, editable=False),
        ),
        migrations.RunPython(existing_folders_keep_their_names, migrations.RunPython.noop),
    ]
