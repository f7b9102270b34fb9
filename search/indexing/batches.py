"""One indexing batch: embed its images, write their vectors, count it once; the last batch sends the
job's finish message."""

from __future__ import annotations

import logging
import time

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import ProductImage
from ml.artifacts import ModelLoadError

from ..models import IndexBatch, IndexJob
from . import enqueue
from .embedding import IndexInfrastructureError, image_files_embed
from .jobs import index_job_fail
from .writes import embeddings_write, images_lock

__all__ = ["index_batch_fail", "index_batch_run"]

logger = logging.getLogger(__name__)


def index_batch_run(*, batch_id: int) -> bool:
    """Embed one batch of a reindex job and upsert its vectors; returns whether it did the work.

    Safe to run twice (the upsert writes the same rows; the job's counts move only the first time
    the batch finishes) and concurrently with other batches. Images that cannot be read are recorded
    as failures with their reason; the rest are embedded. A model that fails to load, or storage
    without local files, raises IndexInfrastructureError: the task retries, then fails the job.
    """
    batch = IndexBatch.objects.select_related("job__model_version").filter(pk=batch_id).first()
    if batch is None or batch.job.status != IndexJob.Status.RUNNING:
        return False
    if batch.finished_at is not None:
        # Redelivered after it finished: if the job's finish message was lost (the broker was down
        # just then), this delivery sends it again; index_job_finish is idempotent.
        if batch.job.batches_done >= batch.job.batches_total:
            job_id = batch.job_id
            transaction.on_commit(lambda: enqueue.job_finish(job_id))
        return False
    version = batch.job.model_version
    started = time.perf_counter()
    # Counted (and committed) before the work: a batch whose worker dies every time, e.g. an image
    # that crashes the decoder, is given up after INDEX_BATCH_MAX_ATTEMPTS instead of looping.
    # Raw SQL: the ORM's update() returns no values, and the count is needed (one round trip, not two).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE search_indexbatch SET attempts = attempts + 1 WHERE id = %s RETURNING attempts", [batch.pk]
        )
        batch.attempts = cursor.fetchone()[0]
    if batch.attempts > settings.INDEX_BATCH_MAX_ATTEMPTS:
        logger.error("Batch %s given up after %s attempts", batch.pk, batch.attempts - 1)
        reason = (
            f"Not embedded: its batch was started {batch.attempts - 1} times and never finished "
            "(the worker was lost each time); reindex with only missing images to try again."
        )
        return _batch_write(batch=batch, vectors={}, failures=dict.fromkeys(batch.image_ids, reason))
    # Only what the model needs: the product's category and price are read under the write's lock.
    files = list(ProductImage.objects.filter(pk__in=batch.image_ids).order_by("id").values_list("id", "image"))
    read = time.perf_counter()
    try:
        vectors, failures = image_files_embed(model_version=version, files=files)
    except ModelLoadError as exc:
        raise IndexInfrastructureError(f"The model could not be loaded: {exc}") from exc
    embedded = time.perf_counter()
    written = _batch_write(batch=batch, vectors=vectors, failures=failures)
    done = time.perf_counter()
    # One line per batch (bench/indexing.py reads them for its per-stage profile of the real run).
    logger.info(
        "Index batch %s of job %s: %d embedded, %d failed; ms rows=%.1f embed=%.1f write=%.1f total=%.1f",
        batch.number,
        batch.job_id,
        len(vectors),
        len(failures),
        1000 * (read - started),
        1000 * (embedded - read),
        1000 * (done - embedded),
        1000 * (done - started),
    )
    return written


def index_batch_fail(*, batch_id: int, reason: str) -> bool:
    """Fail the job of a batch whose task failed for good (retries used up, or an error in the model
    call or the database). Nothing is recorded against its images: the fault was not theirs, and a
    job of "failed" images must never finish complete and activate a version without vectors."""
    batch = IndexBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.finished_at is not None:
        return False
    index_job_fail(job_id=batch.job_id, error=f"Batch {batch.number} could not be embedded: {reason}")
    return True


def _batch_write(*, batch: IndexBatch, vectors: dict[int, np.ndarray], failures: dict[int, str]) -> bool:
    """Write a batch's results and count it once; the last batch sends the job's finish message."""
    job, version = batch.job, batch.job.model_version
    with transaction.atomic():
        with connection.cursor() as cursor:
            # No wait for the WAL flush at commit: a batch lost in a crash just after it is lost with
            # its finished_at, so it is redone (redelivery, or the repair task's requeue).
            cursor.execute("SET LOCAL synchronous_commit = off")
        # The job row lock orders this write against a cancel or "delete vectors" that began during
        # the model call: if the job stopped running, nothing is written.
        if not IndexJob.objects.select_for_update().filter(pk=job.pk, status=IndexJob.Status.RUNNING).exists():
            return False
        # Images (and products) are locked: one deleted during the model call is dropped, and a price
        # or category saved meanwhile is copied as it is now.
        live = images_lock(image_ids=batch.image_ids)
        vectors = {k: v for k, v in vectors.items() if k in live}
        failures = {k: v for k, v in failures.items() if k in live}
        embeddings_write(model_version=version, vectors=vectors, failures=failures)
        first_finish = IndexBatch.objects.filter(pk=batch.pk, finished_at__isnull=True).update(
            finished_at=timezone.now(), embedded=len(vectors), failed=len(failures)
        )
        if first_finish:
            IndexJob.objects.filter(pk=job.pk).update(
                done=F("done") + len(vectors),
                failed=F("failed") + len(failures),
                total=F("total") - (len(batch.image_ids) - len(live)),
                batches_done=F("batches_done") + 1,
            )
            # The row lock held since the start orders concurrent batches: exactly one sees the last.
            job.refresh_from_db(fields=["batches_done", "batches_total", "status"])
            if job.batches_done >= job.batches_total and job.status == IndexJob.Status.RUNNING:
                job_id = job.pk
                transaction.on_commit(lambda: enqueue.job_finish(job_id))
    return True
