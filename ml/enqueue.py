"""Sending ml's Celery messages by task name: ml.services enqueues through here, so it never imports
ml.tasks (which imports it). The name is a task of ml/tasks.py (a test checks)."""

from __future__ import annotations

from config.celery import app

__all__ = ["MODEL_VERSION_TRAIN", "TASK_NAMES", "model_version_train"]

MODEL_VERSION_TRAIN = "ml.tasks.model_version_train_task"
TASK_NAMES = (MODEL_VERSION_TRAIN,)


def model_version_train(model_version_id: int) -> None:
    """Queue the version's training run (settings.CELERY_TASK_ROUTES sends it to the `training` queue)."""
    app.send_task(MODEL_VERSION_TRAIN, args=[model_version_id])
