"""At most one unfinished reindex job per model version, and whether a job embeds only missing images.

Versions that already have several unfinished jobs keep the newest; the older ones are cancelled
first (their pending batches then do nothing, as after any cancel)."""

from django.db import migrations, models
from django.db.models import Q
from django.utils import timezone

UNFINISHED = ["running", "building_index"]


def cancel_all_but_the_newest_unfinished(apps, schema_editor):
    IndexJob = apps.get_model("search", "IndexJob")
    newest: dict[int, int] = {}
    for pk, version_id in (
        IndexJob.objects.filter(status__in=UNFINISHED).order_by("-id").values_list("pk", "model_version_id")
    ):
        newest.setdefault(version_id, pk)
    IndexJob.objects.filter(status__in=UNFINISHED).exclude(pk__in=list(newest.values())).update(
        status="cancelled", finished_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0007_halfvec_storage"),
    ]

    operations = [
        migrations.AddField(
            model_name="indexjob",
            name="only_missing",
            field=models.BooleanField(
                default=False,
                help_text="Embeds only images without a vector or failure (a full reindex embeds every image).",
            ),
        ),
        migrations.RunPython(cancel_all_but_the_newest_unfinished, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="indexjob",
            constraint=models.UniqueConstraint(
                condition=Q(status__in=["running", "building_index"]),
                fields=("model_version",),
                name="one_unfinished_index_job_per_version",
            ),
        ),
    ]
