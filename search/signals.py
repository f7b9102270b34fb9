"""Keeping vectors in step with the catalogue (receivers are connected in SearchConfig.ready)."""

from __future__ import annotations

import logging

from django.db import transaction

from catalog.models import Product, ProductImage
from ml.models import ModelVersion

from . import services, tasks
from .models import ImageEmbedding, IndexJob

logger = logging.getLogger(__name__)


def _enqueue_image_embed(image_id: int) -> None:
    try:
        tasks.image_embed_task.delay(image_id)
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
        ModelVersion.objects.filter(is_active=True).exists()
        or IndexJob.objects.filter(status__in=IndexJob.UNFINISHED).exists()
    )
    if wanted:
        image_id = instance.pk
        transaction.on_commit(lambda: _enqueue_image_embed(image_id))


def product_saved(sender, instance: Product, created: bool, raw: bool = False, **kwargs) -> None:
    """Copy a changed category or price onto the product's embedding rows."""
    if raw or created:
        return
    services.product_embeddings_sync(product=instance)


def connect() -> None:
    from django.db.models.signals import post_save

    post_save.connect(product_image_saved, sender=ProductImage, dispatch_uid="search.product_image_saved")
    post_save.connect(product_saved, sender=Product, dispatch_uid="search.product_saved")
