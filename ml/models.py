from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models

from .architectures import REGISTRY


def artifacts_folder_new() -> str:
    return uuid.uuid4().hex


class ModelVersion(models.Model):
    """One training run and the embedding model it produced, with its figures. Whether it serves
    queries is search's business (search.models.ServingState)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # A name in ml.architectures.REGISTRY (checked by the services, not by a database choice list, so
    # adding an architecture needs no migration).
    architecture = models.CharField(max_length=32)
    hparams = models.JSONField(default=dict, help_text="Hyperparameters as given to ml.training.train.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    epoch = models.PositiveIntegerField(default=0, help_text="Epochs finished.")
    epochs = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0, help_text="Step within the current epoch.")
    steps_per_epoch = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True, help_text="Per epoch: {epoch, loss, val_loss}.")
    metrics = models.JSONField(default=dict, blank=True)
    dim = models.PositiveIntegerField(null=True, blank=True, help_text="Embedding dimension.")
    image_size = models.PositiveIntegerField(null=True, blank=True)
    label_names = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    artifacts_folder = models.CharField(
        max_length=64,
        unique=True,
        default=artifacts_folder_new,
        editable=False,
        help_text="Folder under MODELS_ROOT: unique across databases, unlike the id (versions made before "
        "it existed keep their version-<id> folder).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("train_modelversion", "Can start training a model"),
            ("cancel_modelversion", "Can cancel training or indexing"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.architecture}{f' ({self.variant})' if self.variant else ''}"

    @property
    def variant(self) -> str:
        spec = REGISTRY.get(self.architecture)
        return self.hparams.get("variant", "") if spec is not None and spec.variants else ""

    @property
    def architecture_title(self) -> str:
        spec = REGISTRY.get(self.architecture)
        return spec.title if spec else self.architecture

    @property
    def workdir(self) -> Path:
        """The version's files: checkpoints, the exported embedder, meta.json, TensorBoard logs (ml.artifacts)."""
        return Path(settings.MODELS_ROOT) / self.artifacts_folder

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_fraction(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        return min(1.0, (self.epoch + within) / self.epochs)
