"""IndexJob's QUEUED status was never set (jobs start RUNNING): it goes from the choices and the default."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0004_servingstate"),
    ]

    operations = [
        migrations.AlterField(
            model_name="indexjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("building_index", "Building index"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                db_index=True,
                default="running",
                max_length=16,
            ),
        ),
    ]
