"""Celery tasks for the `embeddings` queue: an id in, a service does the work.

acks_late (settings) means a worker that dies mid-batch leaves the message to be redelivered; the
services are idempotent, so running a task twice writes the same rows once.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from . import services

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError, BrokerError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
}


@shared_task(**RETRY)
def index_batch_task(batch_id: int) -> bool:
    return services.index_batch_run(batch_id=batch_id)


@shared_task(**RETRY)
def index_job_finish_task(job_id: int) -> None:
    services.index_job_finish(job_id=job_id)


@shared_task(**RETRY)
def image_embed_task(image_id: int) -> list[int]:
    return services.image_embed(image_id=image_id)
