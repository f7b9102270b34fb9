"""Celery tasks for the `embeddings` queue: an id in, a service does the work.

acks_late (settings) means a worker that dies mid-batch leaves the message to be redelivered; the
services are idempotent, so running a task twice writes the same rows once.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from . import services

logger = logging.getLogger(__name__)

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError, BrokerError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
}


class IndexBatchTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Retries used up, or an error not worth retrying: record the batch's images as failed with
        # the reason, so the job still finishes (and says why) instead of running forever.
        batch_id = args[0] if args else kwargs.get("batch_id")
        try:
            services.index_batch_give_up(batch_id=batch_id, reason=f"Indexing failed: {type(exc).__name__}: {exc}")
        except Exception:  # the database may be what failed; the batch then stays for a reindex
            logger.exception("Could not record the failure of index batch %s", batch_id)


@shared_task(base=IndexBatchTask, **RETRY)
def index_batch_task(batch_id: int) -> bool:
    return services.index_batch_run(batch_id=batch_id)


@shared_task(**RETRY)
def index_job_finish_task(job_id: int) -> None:
    services.index_job_finish(job_id=job_id)


@shared_task(**RETRY)
def image_embed_task(image_id: int) -> list[int]:
    return services.image_embed(image_id=image_id)
