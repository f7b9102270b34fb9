"""Reindex jobs: start (split into batches, one task each), cancel, fail, and finish (build the HNSW
index, then auto-activate when asked)."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Func
from django.utils import timezone

from catalog.models import ProductImage
from ml.models import ModelVersion

from ..models import IndexBatch, IndexJob, ServingState
from ..serving.activation import (
    ActivationRefused,
    model_version_activate,
    version_storage_ensure,
)
from ..serving.hnsw import HNSW_BUILD_LOCK, hnsw_index_build
from ..serving.versions import model_versions_written
from . import enqueue
from .embedding import embedding_batch_size

__all__ = [
    "index_job_cancel",
    "index_job_fail",
    "index_job_finish",
    "index_job_start",
    "index_missing_for_serving_versions",
    "model_version_trained_index",
]

logger = logging.getLogger(__name__)


# pg_advisory_xact_lock(key, version id): starts for one version take turns, so the second sees the
# first's committed job and joins it (the partial unique index on IndexJob is the backstop).
INDEX_JOB_START_LOCK = 0x4C4B_0004


def index_missing_for_serving_versions() -> list[IndexJob]:
    """Embed images that bypassed the post_save signal (bulk imports) for the versions that serve or
    are being indexed: the active one and any with an unfinished job. A version's unfinished job
    takes the images in (index_job_start), it is never cancelled. Returns the jobs."""
    return [index_job_start(model_version=version, only_missing=True) for version in model_versions_written()]


def index_job_start(*, model_version: ModelVersion, only_missing: bool = False) -> IndexJob:
    """Start reindexing the catalogue for `model_version`, or join the job already indexing it;
    returns the job, with `images_queued` (the images this call queued) and `joined` (it was already
    running) set on it.

    The images (all, or with `only_missing` those without a vector or failure for this version) are
    split into batches of settings.EMBEDDING_BATCH_SIZE; one Celery task per batch is enqueued after
    this transaction commits. A version has at most one unfinished job (the database enforces it):
    a start while one runs adds to that job the images it would embed and the job does not have (a
    full start turns an only-missing job into a full one); while the job builds its HNSW index (no
    batch can be added) those images are queued one by one (search.tasks.image_embed_task). When
    the last batch finishes, the job builds the version's HNSW index. The active version keeps
    serving queries throughout. Raises ValueError when the version did not succeed.
    """
    if model_version.status != ModelVersion.Status.SUCCEEDED:
        raise ValueError(
            f"Only a succeeded model version can be indexed. Received: version #{model_version.pk} "
            f"with status {model_version.status!r}."
        )
    size = embedding_batch_size()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INDEX_JOB_START_LOCK, model_version.pk])
        version_storage_ensure(model_version=model_version)  # fixed before any batch writes
        job = (
            IndexJob.objects.select_for_update()
            .filter(model_version=model_version, status__in=IndexJob.UNFINISHED)
            .first()
        )
        images = ProductImage.objects.order_by("id")
        if only_missing:
            images = images.exclude(embeddings__model_version=model_version).exclude(
                embedding_failures__model_version=model_version
            )
        joined = job is not None
        if job is None:
            job = IndexJob.objects.create(
                model_version=model_version, status=IndexJob.Status.RUNNING, only_missing=only_missing
            )
        elif job.status == IndexJob.Status.BUILDING_INDEX:
            # Its batches are done and its finish is building the index: the images it lacks (those
            # without a vector or failure) go one by one; their rows join the index being built.
            if not only_missing:
                images = images.exclude(embeddings__model_version=model_version).exclude(
                    embedding_failures__model_version=model_version
                )
            ids = list(images.exclude(id__in=_job_image_ids(job)).values_list("id", flat=True))
            transaction.on_commit(lambda: [enqueue.image_embed(pk) for pk in ids])
            job.joined, job.images_queued = True, len(ids)
            return job
        else:
            images = images.exclude(id__in=_job_image_ids(job))
            if not only_missing and job.only_missing:
                job.only_missing = False
                job.save(update_fields=["only_missing"])
        ids = list(images.values_list("id", flat=True))
        job.joined, job.images_queued = joined, len(ids)
        if not ids:
            if job.batches_total == 0:  # a new job with nothing to embed: straight to its index
                transaction.on_commit(lambda: enqueue.job_finish(job.pk))
            return job
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        first = job.batches_total
        created = IndexBatch.objects.bulk_create(
            IndexBatch(job=job, number=first + n, image_ids=chunk) for n, chunk in enumerate(batches)
        )
        # Under the job's row lock, as every batch's count is: the finish waits for these batches too.
        IndexJob.objects.filter(pk=job.pk).update(
            total=F("total") + len(ids), batches_total=F("batches_total") + len(batches)
        )
        job.refresh_from_db(fields=["total", "batches_total"])
        batch_ids = [b.pk for b in created]
        transaction.on_commit(lambda: enqueue.batches(batch_ids))
    return job


def _job_image_ids(job: IndexJob):
    """The ids of every image in the job's batches, as a subquery."""
    return (
        IndexBatch.objects.filter(job=job).annotate(image_id=Func(F("image_ids"), function="unnest")).values("image_id")
    )


def index_job_cancel(*, job: IndexJob) -> IndexJob:
    """Cancel an unfinished reindex job: its pending batches then do nothing. Vectors already
    written stay (index_job_start(only_missing=True) continues from them)."""
    IndexJob.objects.filter(pk=job.pk, status__in=IndexJob.UNFINISHED).update(
        status=IndexJob.Status.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def index_job_fail(*, job_id: int, error: str) -> None:
    IndexJob.objects.filter(pk=job_id, status__in=IndexJob.UNFINISHED).update(
        status=IndexJob.Status.FAILED, error=error[:4000], finished_at=timezone.now()
    )


def index_job_finish(*, job_id: int) -> IndexJob | None:
    """Build the version's HNSW index (concurrently) once every batch is done, then mark the job done;
    a version with auto_activate is then activated if its vectors cover the catalogue.

    Idempotent: a finished or cancelled job is left alone; a build interrupted half-way is redone.
    """
    with transaction.atomic():
        job = IndexJob.objects.select_for_update().select_related("model_version").filter(pk=job_id).first()
        if job is None or job.status not in (IndexJob.Status.RUNNING, IndexJob.Status.BUILDING_INDEX):
            return job
        if job.batches_done < job.batches_total:
            return job
        job.status = IndexJob.Status.BUILDING_INDEX
        job.save(update_fields=["status"])
    try:
        with connection.cursor() as cursor:
            # A duplicate finish message (redelivery) must not see the first build's not-yet-valid
            # index as broken and drop it: one build per version at a time; the other returns.
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [HNSW_BUILD_LOCK, job.model_version_id])
            if not cursor.fetchone()[0]:
                return job
        try:
            hnsw_index_build(model_version=job.model_version)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [HNSW_BUILD_LOCK, job.model_version_id])
    except (OperationalError, InterfaceError):
        raise  # the connection dropped: the task retries, and the build (half-built index too) is redone
    except Exception as exc:
        index_job_fail(job_id=job.pk, error=f"Building the HNSW index failed: {exc}")
        raise
    with transaction.atomic():
        # The job row lock orders this against a cancel during the build: a cancelled job activates nothing.
        if not IndexJob.objects.select_for_update().filter(pk=job.pk, status=IndexJob.Status.BUILDING_INDEX).exists():
            job.refresh_from_db()
            return job
        version = job.model_version
        serving = ServingState.objects.filter(model_version=version).first()
        if serving is not None and serving.auto_activate and not serving.is_active:
            # Before the job reads "done", so whoever waits for "done" sees the switch too.
            try:
                model_version_activate(model_version=version)  # a savepoint: a refusal undoes only itself
            except ActivationRefused as exc:
                logger.warning("Model version %s not auto-activated: %s", version.pk, exc)
        IndexJob.objects.filter(pk=job.pk).update(status=IndexJob.Status.DONE, finished_at=timezone.now())
    job.refresh_from_db()
    return job


def model_version_trained_index(*, model_version: ModelVersion) -> IndexJob | None:
    """After training succeeded: index the catalogue with a version that is to auto-activate
    (index_job_finish then activates it). Returns the job, or None when it was not asked for."""
    if not ServingState.objects.filter(model_version=model_version, auto_activate=True).exists():
        return None
    return index_job_start(model_version=model_version)
