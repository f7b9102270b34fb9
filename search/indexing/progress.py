"""How far indexing has got: a version's coverage of the catalogue and its running job's progress
(selectors only)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef

from catalog.models import ProductImage
from ml.models import ModelVersion

from ..models import EmbeddingFailure, ImageEmbedding, IndexJob

__all__ = ["Coverage", "IndexProgress", "index_coverage", "index_job_status", "index_progress"]


@dataclass(frozen=True)
class IndexProgress:
    done: int
    total: int

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def index_job_status(job: IndexJob) -> dict:
    """A reindex job's progress as JSON-ready data: what the admin's list, version page, dashboard and
    their live updates all show."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "fraction": job.progress_fraction,
        "percent": round(100 * job.progress_fraction, 1),
        "finished": job.is_finished,
        "error": job.error,
    }


def index_progress(*, model_version: ModelVersion) -> IndexProgress | None:
    """Progress of the version's running reindex job, if one runs."""
    job = IndexJob.objects.filter(model_version=model_version, status__in=IndexJob.UNFINISHED).order_by("-id").first()
    return IndexProgress(done=job.processed, total=job.total) if job else None


@dataclass(frozen=True)
class Coverage:
    total_images: int
    embedded: int
    failed: int

    @property
    def missing(self) -> int:
        return max(0, self.total_images - self.embedded - self.failed)

    @property
    def complete(self) -> bool:
        """Every image has a vector or a recorded reason why it cannot have one."""
        return self.missing == 0

    @property
    def fraction(self) -> float:
        return (self.embedded + self.failed) / self.total_images if self.total_images else 1.0

    @property
    def failed_fraction(self) -> float:
        """The share of the catalogue's images recorded as unreadable."""
        return self.failed / self.total_images if self.total_images else 0.0

    def activatable(self, *, max_failed_fraction: float) -> bool:
        """Complete, with vectors for all but at most `max_failed_fraction` of the images: a version
        whose images all "failed" is complete too, and must never serve."""
        if not self.complete:
            return False
        if self.total_images and not self.embedded:
            return False
        return self.failed_fraction <= max_failed_fraction


def index_coverage(*, model_version: ModelVersion) -> Coverage:
    """How much of the catalogue the version's vectors cover (the activation check uses it). An
    image counts once: a failure row beside a vector for the same image is not counted."""
    has_vector = ImageEmbedding.objects.filter(model_version=model_version, image_id=OuterRef("image_id"))
    return Coverage(
        total_images=ProductImage.objects.count(),
        embedded=ImageEmbedding.objects.filter(model_version=model_version).count(),
        failed=EmbeddingFailure.objects.filter(model_version=model_version).exclude(Exists(has_vector)).count(),
    )
