"""manage.py model_versions: the admin's list of model versions as a table."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ml.models import ModelVersion
from search.indexing.progress import index_coverage


def _figure(version: ModelVersion, key: str) -> str:
    value = ((version.metrics or {}).get("holdout") or {}).get("model", {}).get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def _is_active(version: ModelVersion) -> bool:
    serving = getattr(version, "serving", None)  # search.ServingState; no row: neither active nor to be
    return bool(serving and serving.is_active)


class Command(BaseCommand):
    help = "List model versions: id, architecture, status, holdout P@1/P@10, index coverage, active."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=50, help="Newest N versions (default 50).")

    def handle(self, *args, limit: int, **options):
        header = ("id", "architecture", "status", "P@1", "P@10", "coverage", "active")
        rows = []
        for version in ModelVersion.objects.select_related("serving").order_by("-id")[:limit]:
            if version.status == ModelVersion.Status.SUCCEEDED:
                c = index_coverage(model_version=version)
                coverage = f"{c.fraction:.0%} ({c.embedded:,} + {c.failed:,} unreadable of {c.total_images:,})"
            else:
                coverage = "—"
            architecture = version.architecture + (f" ({version.variant})" if version.variant else "")
            rows.append(
                (
                    str(version.pk),
                    architecture,
                    version.status,
                    _figure(version, "precision_at_1"),
                    _figure(version, "precision_at_10"),
                    coverage,
                    "yes" if _is_active(version) else "",
                )
            )
        if not rows:
            self.stdout.write("No model versions yet: train one with `manage.py train_model`.")
            return
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
