"""Reading which version serves and how its vectors are stored (selectors only)."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from ml.models import ModelVersion

from ..models import IndexJob, ServingState
from ..storage import STORAGES, VECTOR, VectorStorage

__all__ = ["active_model_version", "model_version_is_active", "model_versions_written", "version_storage"]


def active_model_version() -> ModelVersion | None:
    """The version every query uses right now (read it once per request and pass it on), with its
    vector storage read in the same query (version_storage)."""
    return (
        ModelVersion.objects.filter(serving__is_active=True).annotate(vector_storage_name=F("serving__storage")).first()
    )


def version_storage(*, model_version: ModelVersion | int) -> VectorStorage:
    """How the version's vectors are stored (search.storage). Free for a version read by
    active_model_version; one query otherwise. A version without a serving state has its vectors,
    if any, in the float32 column: that is where they were before halfvec."""
    if isinstance(model_version, ModelVersion):
        name = getattr(model_version, "vector_storage_name", None)
        if name is not None:
            return STORAGES[name]
        model_version = model_version.pk
    state = ServingState.objects.filter(model_version_id=model_version).only("storage").first()
    return state.vector_storage if state is not None else VECTOR


def model_version_is_active(*, model_version: ModelVersion) -> bool:
    return ServingState.objects.filter(model_version=model_version, is_active=True).exists()


def model_versions_written() -> QuerySet[ModelVersion]:
    """The succeeded versions new images must be embedded for: the active one and any being indexed."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED)
        .filter(Q(serving__is_active=True) | Q(index_jobs__status__in=IndexJob.UNFINISHED))
        .distinct()
    )
