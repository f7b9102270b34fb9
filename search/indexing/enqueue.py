"""Sending indexing's Celery messages by task name: the services enqueue through here, so they never
import search.tasks (which imports them). Each name is a task of search/tasks.py (a test checks)."""

from __future__ import annotations

from collections.abc import Iterable

from config.celery import app

__all__ = ["IMAGE_EMBED", "INDEX_BATCH", "INDEX_JOB_FINISH", "TASK_NAMES", "batches", "image_embed", "job_finish"]

INDEX_BATCH = "search.tasks.index_batch_task"
INDEX_JOB_FINISH = "search.tasks.index_job_finish_task"
IMAGE_EMBED = "search.tasks.image_embed_task"
TASK_NAMES = (INDEX_BATCH, INDEX_JOB_FINISH, IMAGE_EMBED)


def _send(name: str, args: list) -> None:
    """Queue the task by name; in eager mode (task_always_eager: bench/setup_data.py indexes in its own
    process) run it here, which send_task alone would not do."""
    if app.conf.task_always_eager:
        app.loader.import_default_modules()  # the apps' tasks modules, as a worker imports them
        app.tasks[name].apply(args=args)
    else:
        app.send_task(name, args=args)


def batches(batch_ids: Iterable[int]) -> None:
    """One message per batch (settings.CELERY_TASK_ROUTES sends them to the `embeddings` queue)."""
    for batch_id in batch_ids:
        _send(INDEX_BATCH, [batch_id])


def job_finish(job_id: int) -> None:
    _send(INDEX_JOB_FINISH, [job_id])


def image_embed(image_id: int) -> None:
    _send(IMAGE_EMBED, [image_id])
