"""Celery tasks for the `embeddings` queue: an id in, a service does the work.

acks_late (settings) means a worker that dies mid-batch leaves the message to be redelivered; the
services are idempotent, so running a task twice writes the same rows once.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from .indexing import batches, jobs, writes
from .indexing.embedding import IndexInfrastructureError
from .indexing.repair import lifecycle_repair

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError, BrokerError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
}


# A model that does not load or a storage without local files may be fixed within minutes (a
# volume mounted late); past these retries the job fails with the reason.
INFRASTRUCTURE_RETRIES = 3


class IndexBatchTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Retries used up, or an error not worth retrying: the job fails and says why, instead of
        # running forever, and nothing is recorded against the batch's images (it was not their fault).
        batch_id = args[0] if args else kwargs.get("batch_id")
        try:
            batches.index_batch_fail(batch_id=batch_id, reason=f"{type(exc).__name__}: {exc}")
        except Exception:  # the database may be what failed; the repair task then requeues the batch
            logger.exception("Could not record the failure of index batch %s", batch_id)


@shared_task(base=IndexBatchTask, bind=True, **RETRY)
def index_batch_task(self, batch_id: int) -> bool:
    try:
        return batches.index_batch_run(batch_id=batch_id)
    except IndexInfrastructureError as exc:
        raise self.retry(exc=exc, countdown=10 * 2**self.request.retries, max_retries=INFRASTRUCTURE_RETRIES) from exc


@shared_task(**RETRY)
def index_job_finish_task(job_id: int) -> None:
    jobs.index_job_finish(job_id=job_id)


@shared_task(**RETRY)
def image_embed_task(image_id: int) -> list[int]:
    return writes.image_embed(image_id=image_id)


@shared_task(**RETRY)
def lifecycle_repair_task() -> dict:
    """Celery beat's periodic repair (settings.CELERY_BEAT_SCHEDULE): see search.indexing.repair."""
    return asdict(lifecycle_repair())
