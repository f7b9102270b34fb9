"""is_active and auto_activate now live in search.ServingState; search.0004 copied them (and the
reindex/activate permissions) before this drops them. The dependency on search orders the data
move only: ml's code imports nothing of search."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ml", "0004_artifacts_folder_unique"),
        ("search", "0004_servingstate"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="modelversion", name="one_active_model_version"),
        migrations.RemoveField(model_name="modelversion", name="auto_activate"),
        migrations.RemoveField(model_name="modelversion", name="is_active"),
        migrations.AlterModelOptions(
            name="modelversion",
            options={
                "ordering": ["-id"],
                "permissions": [
                    ("train_modelversion", "Can start training a model"),
                    ("cancel_modelversion", "Can cancel training or indexing"),
                ],
            },
        ),
    ]
