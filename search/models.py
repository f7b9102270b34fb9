"""Vectors in PostgreSQL: one embedding per (product image, model version), reindex jobs, and which
version serves."""

from __future__ import annotations

import numpy as np
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from catalog.models import Category, Product, ProductImage
from ml.models import ModelVersion
from search.fields import HalfVectorField, VectorField
from search.storage import (
    STORAGE_CHOICES,
    STORAGES,
    VECTOR,
    VectorStorage,
    vector_array,
)


class ServingState(models.Model):
    """Whether a model version serves every query (at most one does), and whether it should once
    its vectors cover the catalogue. A version without a row neither serves nor auto-activates.

    Changed only through search.serving.activation (model_version_train_start, model_version_activate).
    """

    model_version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, primary_key=True, related_name="serving"
    )
    is_active = models.BooleanField(default=False)
    auto_activate = models.BooleanField(
        default=False, help_text="Index the catalogue after training and activate when the vectors cover it."
    )
    # Fixed once the version has vectors (search.serving.activation.version_storage_ensure). The default is
    # what every version had before halfvec: new versions get settings.VECTOR_STORAGE explicitly.
    storage = models.CharField(
        max_length=8,
        choices=STORAGE_CHOICES,
        default=VECTOR.name,
        help_text="How the version's vectors are stored: float32 vector or float16 halfvec.",
    )

    class Meta:
        permissions = [
            ("reindex_modelversion", "Can reindex the catalogue with a model"),
            ("activate_modelversion", "Can activate a model for search"),
        ]
        constraints = [
            # At most one active version: two admins activating at once cannot both win.
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_serving_model_version"
            ),
        ]

    def __str__(self) -> str:
        return f"Version {self.model_version_id}: {'active' if self.is_active else 'inactive'}"

    @property
    def vector_storage(self) -> VectorStorage:
        return STORAGES[self.storage]


class ImageEmbedding(models.Model):
    """An image's vector under one model version.

    The vector is in `embedding` (float32 vector) or `embedding_half` (float16 halfvec), as the
    version's ServingState.storage says (search.storage); the other column is NULL. Neither has a
    fixed dimension, so versions of different sizes share the table; each version gets its own
    partial HNSW index on `(embedding::vector(D))` or `(embedding_half::halfvec(D))` (see
    search.serving.hnsw.hnsw_index_build).
    product, category and price are copied from the product so filtered queries read one table;
    search.receivers keeps them in sync.
    """

    image = models.ForeignKey(ProductImage, on_delete=models.CASCADE, related_name="embeddings", db_index=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="embeddings", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+", db_index=False)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="+", db_index=False)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    embedding = VectorField(null=True)
    embedding_half = HalfVectorField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_embedding_per_image_and_version"),
            models.CheckConstraint(
                condition=Q(embedding__isnull=False, embedding_half__isnull=True)
                | Q(embedding__isnull=True, embedding_half__isnull=False),
                name="one_vector_column_per_embedding",
            ),
        ]
        indexes = [
            models.Index(fields=["model_version", "product"], name="search_emb_version_product"),
            models.Index(fields=["product"], name="search_emb_product"),
        ]

    def __str__(self) -> str:
        return f"Image {self.image_id} under version {self.model_version_id}"

    @property
    def vector(self) -> np.ndarray:
        """The stored vector as float32, whichever column holds it."""
        return vector_array(self.embedding if self.embedding is not None else self.embedding_half)


class EmbeddingFailure(models.Model):
    """An image a model version could not embed (unreadable file), with the reason."""

    image = models.ForeignKey(ProductImage, on_delete=models.CASCADE, related_name="embedding_failures", db_index=False)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="embedding_failures")
    reason = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_failure_per_image_and_version"),
        ]

    def __str__(self) -> str:
        return f"Image {self.image_id} failed under version {self.model_version_id}: {self.reason}"


class IndexJob(models.Model):
    """One reindex of the catalogue for a model version: batches, progress, then the HNSW index."""

    class Status(models.TextChoices):
        RUNNING = "running"  # from the start: index_job_start queues every batch as it creates the job
        BUILDING_INDEX = "building_index", "Building index"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    UNFINISHED = (Status.RUNNING, Status.BUILDING_INDEX)

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="index_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    only_missing = models.BooleanField(
        default=False, help_text="Embeds only images without a vector or failure (a full reindex embeds every image)."
    )
    total = models.PositiveIntegerField(default=0, help_text="Images to embed.")
    done = models.PositiveIntegerField(default=0, help_text="Images embedded.")
    failed = models.PositiveIntegerField(default=0, help_text="Images that could not be read.")
    batches_total = models.PositiveIntegerField(default=0)
    batches_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A start while one runs joins it (search.indexing.jobs.index_job_start); this makes two
            # concurrent starts that both missed the other's uncommitted job fail instead of both running.
            models.UniqueConstraint(
                fields=["model_version"],
                condition=Q(status__in=["running", "building_index"]),
                name="one_unfinished_index_job_per_version",
            ),
        ]

    def __str__(self) -> str:
        return f"Index job #{self.pk} for version {self.model_version_id}"

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def progress_fraction(self) -> float:
        if self.status == self.Status.DONE:
            return 1.0
        return min(1.0, self.processed / self.total) if self.total else 0.0

    @property
    def is_finished(self) -> bool:
        return self.status not in self.UNFINISHED


class IndexBatch(models.Model):
    """A slice of an IndexJob's images: one Celery task. finished_at makes its counts count once."""

    job = models.ForeignKey(IndexJob, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    image_ids = ArrayField(models.BigIntegerField())
    embedded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker started it (redeliveries count).")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="one_batch_number_per_job")]

    def __str__(self) -> str:
        return f"Batch {self.number} of job {self.job_id}"


class NearDuplicate(Product):
    """Products seen from the admin's near-duplicates page (search.queries.duplicates); no table of its own."""

    class Meta:
        proxy = True
        verbose_name = "near-duplicate product"
        verbose_name_plural = "near-duplicate products"
