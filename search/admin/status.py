"""What the model-version pages show of a version: its live status (the panel's JSON), progress
bars and holdout figures."""

from __future__ import annotations

from django.utils.html import format_html

from ml.models import ModelVersion

from ..indexing.progress import index_coverage, index_job_status
from ..models import IndexJob
from ..serving.versions import model_version_is_active


def progress_bar(fraction: float, label: str = ""):
    return format_html(
        '<div class="lk-progress" title="{}"><span style="width:{}%"></span></div> <small>{}</small>',
        label,
        round(fraction * 100, 1),
        label,
    )


def figure(version: ModelVersion, key: str):
    value = (version.metrics.get("holdout") or {}).get("model", {}).get(key)
    return f"{value:.3f}" if isinstance(value, float) else "—"


def version_status(version: ModelVersion, *, polling: bool = False) -> dict:
    """Everything the admin's live panel shows, as JSON-ready data.

    `polling`: the panel's request every two seconds. While a reindex job runs, its counters (kept
    by each batch as it finishes) are the progress, and the coverage, three counts over the
    catalogue's tables, is left out; the page reloads with it once the job has finished."""
    job = IndexJob.objects.filter(model_version=version).order_by("-id").first()
    busy = job is not None and not job.is_finished
    coverage = (
        index_coverage(model_version=version)
        if version.status == ModelVersion.Status.SUCCEEDED and not (polling and busy)
        else None
    )
    return {
        "id": version.pk,
        "status": version.status,
        "is_active": model_version_is_active(model_version=version),
        "epoch": version.epoch,
        "epochs": version.epochs,
        "step": version.step,
        "steps_per_epoch": version.steps_per_epoch,
        "training_fraction": version.progress_fraction,
        "loss_history": version.loss_history,
        "error": version.error,
        "index_job": None if job is None else index_job_status(job),
        "coverage": None
        if coverage is None
        else {
            "total": coverage.total_images,
            "embedded": coverage.embedded,
            "failed": coverage.failed,
            "complete": coverage.complete,
            "fraction": coverage.fraction,
            "failed_percent": round(100 * coverage.failed_fraction, 1),
        },
    }
