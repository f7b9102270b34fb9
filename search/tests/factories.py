"""Test data for search: products with tiny generated images, model versions, hand-made vectors."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence

import numpy as np
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from catalog.models import Category, Product, ProductImage
from ml.models import ModelVersion
from search.indexing.batches import index_batch_run
from search.indexing.jobs import index_job_finish, index_job_start
from search.models import ImageEmbedding, IndexJob, ServingState
from search.serving.activation import model_version_activate
from search.serving.versions import version_storage

_counter = itertools.count(1)
SHAPES = ("square", "circle", "triangle", "bar")
COLORS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (240, 220, 40))


def shape_image(shape: str = "square", *, color=(220, 40, 40), size: int = 16) -> Image.Image:
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    lo, hi = size // 5, size - size // 5 - 1
    if shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=color)
    elif shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=color)
    elif shape == "triangle":
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=color)
    else:
        draw.rectangle([lo, size // 2 - 2, hi, size // 2 + 1], fill=color)
    return img


def image_bytes(img: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def shape_png(shape: str = "square", *, color=(220, 40, 40), size: int = 16) -> bytes:
    return image_bytes(shape_image(shape, color=color, size=size))


def category_create(name: str | None = None) -> Category:
    name = name or f"Search category {next(_counter)}"
    slug = name.lower().replace(" ", "-")
    return Category.objects.get_or_create(name=name, defaults={"slug": slug})[0]


def product_create(
    *, category: Category | None = None, images: Sequence[bytes] | None = None, price=10, **fields
) -> Product:
    n = next(_counter)
    product = Product.objects.create(
        sku=fields.pop("sku", f"S-{n:05d}"),
        title=fields.pop("title", f"Search product {n}"),
        category=category or category_create(),
        price=price,
        **fields,
    )
    for position, data in enumerate(images if images is not None else [shape_png()]):
        image = ProductImage(product=product, position=position)
        image.image.save(f"s{n}.png", ContentFile(data), save=False)
        image.save()
    return product


def model_version_create(*, dim: int = 3, active: bool = False, auto_activate: bool = False, **fields) -> ModelVersion:
    """A version without model files; `active` makes it the serving one (as a forced activation would)."""
    version = ModelVersion.objects.create(
        architecture=fields.pop("architecture", "classifier"),
        status=fields.pop("status", ModelVersion.Status.SUCCEEDED),
        dim=dim,
        image_size=fields.pop("image_size", 16),
        **fields,
    )
    if active or auto_activate:
        serving_set(version, is_active=active, auto_activate=auto_activate)
    return version


def serving_set(version: ModelVersion, **state) -> ServingState:
    """Set a version's serving flags directly (is_active, auto_activate), as a test's given state."""
    return ServingState.objects.update_or_create(model_version=version, defaults=state)[0]


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(serving__is_active=True).first()


def embedding_put(*, image: ProductImage, model_version: ModelVersion, vector: Sequence[float]) -> ImageEmbedding:
    product = image.product
    return ImageEmbedding.objects.create(
        image=image,
        model_version=model_version,
        product=product,
        category_id=product.category_id,
        price=product.price,
        # as the indexing services write it, in the column of the version's storage
        **{version_storage(model_version=model_version).column: np.asarray(vector, np.float32)},
    )


def product_with_vectors(*, model_version: ModelVersion, vectors: Sequence[Sequence[float]], **fields) -> Product:
    """A product with one image per vector, each image embedded with that vector."""
    product = product_create(images=[shape_png() for _ in vectors], **fields)
    for image, vector in zip(product.images.order_by("position"), vectors, strict=True):
        embedding_put(image=image, model_version=model_version, vector=vector)
    return product


def products_bulk(
    *, model_version: ModelVersion, vectors: Sequence[Sequence[float]], categories: Sequence[Category], prices=None
) -> list[Product]:
    """Many one-image products at once (image rows only, no files): for ranking tests."""
    start = next(_counter) * 10000
    products = Product.objects.bulk_create(
        Product(
            sku=f"B-{start + i}",
            title=f"Bulk {i}",
            category=categories[i % len(categories)],
            price=prices[i] if prices is not None else 10,
        )
        for i in range(len(vectors))
    )
    images = ProductImage.objects.bulk_create(
        ProductImage(product=p, image=f"products/none/{p.sku}.png", width=16, height=16, sha256="0" * 64)
        for p in products
    )
    column = version_storage(model_version=model_version).column
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(
            image=image,
            model_version=model_version,
            product=product,
            category_id=product.category_id,
            price=product.price,
            **{column: list(vector)},
        )
        for image, product, vector in zip(images, products, vectors, strict=True)
    )
    return products


def index_job_run_here(job: IndexJob) -> IndexJob:
    """Run a reindex job's batches and finish in this process, as the workers would (messages it
    queued find nothing left to do); returns the job as it ended."""
    for batch in job.batches.all():
        index_batch_run(batch_id=batch.pk)
    index_job_finish(job_id=job.pk)
    job.refresh_from_db()
    return job


def index_and_activate(model_version: ModelVersion) -> IndexJob:
    """Index the whole catalogue with `model_version` in this process, then make it the active one."""
    job = index_job_run_here(index_job_start(model_version=model_version))
    model_version_activate(model_version=model_version)
    return job
