"""Which version serves: training a version that serves when done, activating one (atomically),
deleting a version's vectors, and fixing how a version stores them."""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ml.models import ModelVersion
from ml.services import model_version_create

from ..indexing.progress import index_coverage
from ..models import EmbeddingFailure, ImageEmbedding, IndexJob, ServingState
from ..storage import VECTOR, VectorStorage, storage_named
from .hnsw import hnsw_index_drop

__all__ = [
    "ActivationRefused",
    "VectorsInUse",
    "model_version_activate",
    "model_version_storage_set",
    "model_version_train_start",
    "model_version_vectors_delete",
    "version_storage_ensure",
]


class ActivationRefused(Exception):
    """The model version cannot become active; str(exc) says why and what to do."""


class VectorsInUse(Exception):
    """The active version's vectors serve every query and cannot be deleted."""


def model_version_train_start(
    *,
    architecture: str | None = None,
    variant: str | None = None,
    overrides: dict | None = None,
    auto_activate: bool = False,
    enqueue: bool = True,
    storage: str | None = None,
) -> ModelVersion:
    """Queue a training run (ml.services.model_version_create; with `enqueue` False nothing is queued:
    the caller trains it itself); with `auto_activate`, the catalogue is indexed once it is trained
    and the version serves when its vectors cover it. Its vectors are stored as `storage` (vector or
    halfvec; settings.VECTOR_STORAGE by default). Raises ValueError for bad hyperparameters or
    storage, before anything is recorded."""
    chosen = storage_named(storage or settings.VECTOR_STORAGE)
    with transaction.atomic():  # the training task is enqueued after this commits, with the state
        version = model_version_create(architecture=architecture, variant=variant, overrides=overrides, enqueue=enqueue)
        ServingState.objects.create(model_version=version, auto_activate=auto_activate, storage=chosen.name)
    return version


ACTIVATION_LOCK = 0x4C4B_0001  # pg_advisory_xact_lock key for model_version_activate


def model_version_activate(*, model_version: ModelVersion, force: bool = False) -> ModelVersion:
    """Make `model_version` the one every query uses, in one transaction.

    Allowed only for a succeeded version whose vectors cover the catalogue: every image embedded or
    recorded as unreadable, and at most settings.ACTIVATION_MAX_FAILED_FRACTION of them unreadable
    (so a version without vectors never serves), unless `force` (which skips only the coverage check). Other versions are
    deactivated in the same transaction, so requests see either the old or the new version, never
    both. Raises ActivationRefused with the reason.
    """
    with transaction.atomic():
        # One activation at a time: two racing ones each lock only their own row and find nothing
        # active, and the second then hits the one-active constraint (IntegrityError). Raw SQL: the
        # ORM has no advisory locks; the lock ends with the transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ACTIVATION_LOCK])
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.status != ModelVersion.Status.SUCCEEDED:
            raise ActivationRefused(
                f"Model version #{version.pk} has status “{version.get_status_display()}”; only a succeeded "
                "version can be activated."
            )
        if not force:
            coverage = index_coverage(model_version=version)
            bound = settings.ACTIVATION_MAX_FAILED_FRACTION
            if not coverage.activatable(max_failed_fraction=bound):
                raise ActivationRefused(
                    f"Model version #{version.pk} has vectors for {coverage.embedded:,} of {coverage.total_images:,} "
                    f"images ({coverage.failed:,} unreadable, {coverage.failed_fraction:.1%}; at most {bound:.1%} "
                    f"may be; {coverage.missing:,} missing). Reindex it first, or force the activation."
                )
        list(ServingState.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk))
        ServingState.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ServingState.objects.update_or_create(model_version=version, defaults={"is_active": True})
    return model_version


def model_version_vectors_delete(*, model_version: ModelVersion) -> int:
    """Delete a version's vectors, failure records and HNSW index; returns the vectors deleted.

    Refuses (VectorsInUse) for the active version. Unfinished reindex jobs for it are cancelled.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if ServingState.objects.select_for_update().filter(model_version=version, is_active=True).exists():
            raise VectorsInUse(
                f"Model version #{version.pk} is active: activate another version before deleting its vectors."
            )
        IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED).update(
            status=IndexJob.Status.CANCELLED, finished_at=timezone.now()
        )
        deleted, _ = ImageEmbedding.objects.filter(model_version=version).delete()
        EmbeddingFailure.objects.filter(model_version=version).delete()
    hnsw_index_drop(model_version=version)
    return deleted


def version_storage_ensure(*, model_version: ModelVersion) -> VectorStorage:
    """The version's vector storage, recorded on its serving state (created if missing) so it stays
    fixed once vectors are written. A version without a serving state gets settings.VECTOR_STORAGE,
    unless it already has float32 vectors (written before halfvec existed): those stay vector.
    The writers call this before writing a version's vectors and write to `storage.column`."""
    state = ServingState.objects.filter(model_version=model_version).only("storage").first()
    if state is not None:
        return state.vector_storage
    legacy = ImageEmbedding.objects.filter(model_version=model_version, embedding__isnull=False).exists()
    chosen = VECTOR if legacy else storage_named(settings.VECTOR_STORAGE)
    state, _ = ServingState.objects.get_or_create(model_version=model_version, defaults={"storage": chosen.name})
    return state.vector_storage


def model_version_storage_set(*, model_version: ModelVersion, storage: str) -> VectorStorage:
    """Store the version's vectors as `storage` ("vector" or "halfvec") from now on. Allowed only
    while it has no vectors and no unfinished reindex job (delete its vectors first): its vectors
    and its HNSW index are all of one type. Raises ValueError with the reason."""
    chosen = storage_named(storage)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        state, _ = ServingState.objects.select_for_update().get_or_create(model_version=version)
        if state.storage == chosen.name:
            return chosen
        if ImageEmbedding.objects.filter(model_version=version).exists():
            raise ValueError(
                f"Model version #{version.pk} already stores its vectors as {state.storage}: delete its vectors "
                f"before storing them as {chosen.name}."
            )
        if IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED).exists():
            raise ValueError(
                f"Model version #{version.pk} is being indexed: cancel the job before changing its storage."
            )
        state.storage = chosen.name
        state.save(update_fields=["storage"])
    return chosen
