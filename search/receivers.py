"""search listening to the layers below it (connected in SearchConfig.ready): vectors kept in step
with the catalogue, bulk imports indexed, trained versions indexed and activated when asked."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save

from catalog.models import Product, ProductImage
from catalog.signals import images_bulk_added
from ml.models import ModelVersion
from ml.signals import model_version_trained

from .indexing import enqueue
from .indexing.jobs import (
    index_missing_for_serving_versions,
    model_version_trained_index,
)
from .indexing.writes import product_embeddings_sync
from .models import ImageEmbedding, IndexJob, ServingState

logger = logging.getLogger(__name__)


def _enqueue_image_embed(image_id: int) -> None:
    try:
        enqueue.image_embed(image_id)
    except Exception:  # a broker outage must not turn a saved image into an error page
        logger.exception("Could not enqueue embedding of image %s; a reindex with only_missing picks it up.", image_id)


def product_image_saved(sender, instance: ProductImage, created: bool, raw: bool = False, **kwargs) -> None:
    """Embed a new or changed image for the active version (and any being indexed), after commit."""
    if raw:
        return
    if not created:
        # The image may have moved to another product: keep the copied columns right until re-embedded.
        product = instance.product
        ImageEmbedding.objects.filter(image_id=instance.pk).exclude(product_id=product.pk).update(
            product_id=product.pk, category_id=product.category_id, price=product.price
        )
    wanted = (
        ServingState.objects.filter(is_active=True).exists()
        or IndexJob.objects.filter(status__in=IndexJob.UNFINISHED).exists()
    )
    if wanted:
        image_id = instance.pk
        transaction.on_commit(lambda: _enqueue_image_embed(image_id))


def product_saved(sender, instance: Product, created: bool, raw: bool = False, **kwargs) -> None:
    """Copy a changed category or price onto the product's embedding rows."""
    if raw or created:
        return
    product_embeddings_sync(product=instance)


def images_bulk_imported(sender, count: int, **kwargs) -> str | None:
    """Bulk imports send no post_save: embed their images for the version(s) serving search."""
    jobs = index_missing_for_serving_versions()
    return (
        "\n".join(
            f"Indexing {job.images_queued} new images for model version {job.model_version_id}."
            for job in jobs
            if job.images_queued
        )
        or None
    )


def version_trained(sender, model_version: ModelVersion, **kwargs) -> None:
    """A version that is to auto-activate is indexed now; it activates when its vectors cover the catalogue."""
    model_version_trained_index(model_version=model_version)


def connect() -> None:
    post_save.connect(product_image_saved, sender=ProductImage, dispatch_uid="search.product_image_saved")
    post_save.connect(product_saved, sender=Product, dispatch_uid="search.product_saved")
    images_bulk_added.connect(images_bulk_imported, dispatch_uid="search.images_bulk_imported")
    model_version_trained.connect(version_trained, dispatch_uid="search.version_trained")
