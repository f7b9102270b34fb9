from django.db import migrations, models

import ml.models


class Migration(migrations.Migration):
    dependencies = [
        ("ml", "0003_artifacts_folder"),
    ]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="artifacts_folder",
            field=models.CharField(
                default=ml.models.artifacts_folder_new,
                editable=False,
                max_length=64,
                unique=True,
                help_text="Folder under MODELS_ROOT: unique across databases, unlike the id (versions made "
                "before it existed keep their version-<id> folder).",
            ),
        ),
    ]
