"""Writing one image's or one batch's vectors and failure records, under the row locks every writer
takes in the same order; and keeping the copied product columns in step."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from django.db import connection, transaction

from catalog.models import Product, ProductImage
from ml.artifacts import ModelLoadError
from ml.models import ModelVersion

from ..models import EmbeddingFailure, ImageEmbedding
from ..serving.activation import version_storage_ensure
from ..serving.versions import model_versions_written
from .embedding import IndexInfrastructureError, images_embed
from .vector_copy import embeddings_upsert

__all__ = ["embeddings_write", "image_embed", "images_lock", "product_embeddings_sync"]

logger = logging.getLogger(__name__)


def embeddings_write(*, model_version: ModelVersion, vectors: dict[int, np.ndarray], failures: dict[int, str]) -> None:
    """Upsert vectors and failure reasons for images that the caller has locked, with their products,
    in this transaction (`_images_lock`): idempotent. The vectors go in with one binary COPY and one
    INSERT … SELECT … ON CONFLICT (search.indexing.vector_copy) into the version's storage column (vector or
    halfvec, search.storage), which copies product, category and price from the locked rows; a
    failure rolls the caller's transaction back whole."""
    if vectors:
        storage = version_storage_ensure(model_version=model_version)
        embedded = sorted(vectors)  # a fixed order: concurrent upserts lock rows in the same order
        with connection.cursor() as cursor:
            embeddings_upsert(
                cursor=cursor,
                model_version_id=model_version.pk,
                image_ids=embedded,
                vectors=np.stack([vectors[i] for i in embedded]),
                storage=storage,
            )
        EmbeddingFailure.objects.filter(model_version=model_version, image_id__in=embedded).delete()
    if failures:
        EmbeddingFailure.objects.bulk_create(
            [
                EmbeddingFailure(image_id=i, model_version_id=model_version.pk, reason=failures[i][:2000])
                for i in sorted(failures)
            ],
            update_conflicts=True,
            unique_fields=["image", "model_version"],
            update_fields=["reason", "updated_at"],
        )
        # A vector from before the file went bad no longer describes the image.
        ImageEmbedding.objects.filter(model_version=model_version, image_id__in=list(failures)).delete()


def images_lock(*, image_ids: Sequence[int]) -> set[int]:
    """Lock the images and their products (FOR NO KEY UPDATE, in image id order: the order every
    writer takes them) for this transaction; returns the ids of the images that still exist.

    Raw SQL: the ORM locks `of` related rows only while building model instances for them, which
    costs more than the rest of a batch's write."""
    if not image_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.id FROM catalog_productimage i JOIN catalog_product p ON p.id = i.product_id "
            "WHERE i.id = ANY(%s) ORDER BY i.id FOR NO KEY UPDATE OF i, p",
            [list(image_ids)],
        )
        return {row[0] for row in cursor.fetchall()}


def image_embed(*, image_id: int) -> list[int]:
    """Embed one product image for the active version and any version being reindexed.

    Called (through a task) after an image is saved. Returns the ids of the versions written; an image
    deleted meanwhile, or no version to write for, writes nothing.
    """
    image = ProductImage.objects.select_related("product").filter(pk=image_id).first()
    if image is None:
        return []
    written = []
    for version in model_versions_written():
        try:
            vectors, failures = images_embed(model_version=version, images=[image])
        except (ModelLoadError, IndexInfrastructureError) as exc:
            logger.warning("Image %s not embedded for version %s: %s", image_id, version.pk, exc)
            continue
        with transaction.atomic():
            # As a batch does: the image and product read again, locked, so the price and category
            # copied are today's, and a batch writing the same image waits (one vector or one failure).
            if not images_lock(image_ids=[image_id]):
                return written
            embeddings_write(model_version=version, vectors=vectors, failures=failures)
        written.append(version.pk)
    return written


def product_embeddings_sync(*, product: Product) -> int:
    """Copy the product's category and price onto its embedding rows; returns rows changed."""
    return (
        ImageEmbedding.objects.filter(product_id=product.pk)
        .exclude(category_id=product.category_id, price=product.price)
        .update(category_id=product.category_id, price=product.price)
        if product.price is not None
        else ImageEmbedding.objects.filter(product_id=product.pk)
        .exclude(category_id=product.category_id, price__isnull=True)
        .update(category_id=product.category_id, price=None)
    )
