"""Similar items on a product page: the nearest other products to the mean of its photos' vectors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from catalog.models import Product, ProductImage
from ml.models import ModelVersion

from ..indexing.progress import IndexProgress, index_progress
from ..models import ImageEmbedding
from ..serving.versions import active_model_version, version_storage
from ..storage import vector_array
from .nearest import Neighbour, nearest_products
from .weights import SIMILAR, query_vector

__all__ = ["SimilarItems", "SimilarProduct", "product_similar", "product_vector", "products_with_images"]


@dataclass(frozen=True)
class SimilarProduct:
    product: Product
    distance: float
    image: ProductImage | None

    @property
    def image_url(self) -> str:
        return self.image.image.url if self.image else ""


@dataclass
class SimilarItems:
    """What the "Similar items" section shows: `state` is one of the constants below."""

    NO_MODEL = "no_model"
    NOT_INDEXED = "not_indexed"
    NO_IMAGES = "no_images"
    READY = "ready"

    state: str
    items: list[SimilarProduct] = field(default_factory=list)
    model_version: ModelVersion | None = None
    progress: IndexProgress | None = None  # when not indexed and a reindex job is running

    @property
    def is_ready(self) -> bool:
        return self.state == self.READY


def products_with_images(neighbours: list[Neighbour]) -> list[SimilarProduct]:
    products = Product.objects.browsable().in_bulk([n.product_id for n in neighbours])
    items = []
    for n in neighbours:
        product = products.get(n.product_id)
        if product is None:  # deleted between the two queries
            continue
        images = {image.pk: image for image in product.images.all()}
        items.append(
            SimilarProduct(product=product, distance=n.distance, image=images.get(n.image_id) or product.primary_image)
        )
    return items


def product_similar(*, product: Product, k: int = 8, same_category: bool = False, exact: bool = False) -> SimilarItems:
    """The k nearest other products to `product` (by L2 distance between images; a product counts once,
    by its closest image), optionally only in its category.

    The query is the mean of the product's photos' vectors, so every photo of it counts. Against the
    alternative (each photo queried, products by their closest photo) it measured as good on the
    photo catalogue (docs/benchmarks.md, "Photo catalogue") at one index query instead of one per photo.
    Reads the active version once, so every row comes from one version. Six queries when ready
    (pinned by a test).
    """
    version = active_model_version()
    if version is None:
        return SimilarItems(state=SimilarItems.NO_MODEL)
    storage = version_storage(model_version=version)
    vectors = list(
        ImageEmbedding.objects.filter(model_version=version, product_id=product.pk).values_list(
            storage.column, flat=True
        )
    )
    vector = product_vector(vectors) if vectors else None
    if vector is None:
        if not product.images.all():
            return SimilarItems(state=SimilarItems.NO_IMAGES, model_version=version)
        return SimilarItems(
            state=SimilarItems.NOT_INDEXED, model_version=version, progress=index_progress(model_version=version)
        )
    neighbours = nearest_products(
        model_version_id=version.pk,
        vector=vector,
        k=k,
        exclude_product_id=product.pk,
        category_id=product.category_id if same_category else None,
        exact=exact,
        storage=storage,
        rank_vector=query_vector(vector, version.metrics.get("vector_parts"), SIMILAR),
    )
    return SimilarItems(state=SimilarItems.READY, items=products_with_images(neighbours), model_version=version)


def product_vector(vectors) -> np.ndarray:
    """One query vector for a product: the mean of its photos' vectors, back to unit length when
    they have it (the normalised models' vectors do)."""
    stacked = np.asarray([vector_array(v) for v in vectors])
    mean = stacked.mean(axis=0)
    norms = np.linalg.norm(stacked, axis=1)
    if np.allclose(norms, 1.0, atol=1e-3):
        mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return mean
