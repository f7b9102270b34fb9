"""Near-duplicate products: pairs of different products whose images lie within a distance of each
other under a model version, found through the version's HNSW index (one index probe per image, not
an n² comparison).

The default threshold comes from the model's own distances: a quarter of the median distance from
an image to the nearest image of another product, over a fixed sample of up to 500 images. A pair
that close is four times nearer than a typical product is to its closest neighbour; it adapts to
each model's scale (vectors of different models are not comparable), and in a catalogue without
copies it flags few pairs instead of a fixed share of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.db import connection

from catalog.models import Product, ProductImage
from ml.models import ModelVersion

from ..models import ImageEmbedding
from ..serving.hnsw import hnsw_scan, version_dim
from ..serving.versions import version_storage

THRESHOLD_FRACTION = 0.25
THRESHOLD_SAMPLE = 500
NEIGHBOURS = 5  # other products looked at per image
EF_SEARCH = 40
CHUNK = 2000  # query images per statement


@dataclass(frozen=True)
class DuplicatePair:
    product_a: int
    image_a: int
    product_b: int
    image_b: int
    distance: float


# Raw SQL: the ORM cannot say LATERAL. Each query image probes the version's partial HNSW index (the
# ORDER BY casts to vector(D) or halfvec(D), as the version's storage says, and the WHERE names the
# version as a constant, exactly as the index does); the iterative scan skips the image's own
# product and keeps returning rows.
_NEAREST_OTHER_PRODUCTS = """
SELECT a.product_id, a.image_id, n.product_id, n.image_id, n.distance
FROM search_imageembedding a
CROSS JOIN LATERAL (
    SELECT b.product_id, b.image_id, {b} <-> {a} AS distance
    FROM search_imageembedding b
    WHERE b.model_version_id = {version} AND b.product_id <> a.product_id
    ORDER BY {b} <-> {a}
    LIMIT {limit}
) n
WHERE a.model_version_id = {version} AND a.id = ANY(%s)
"""


def _nearest_other(*, model_version: ModelVersion, dim: int, ids: list[int], limit: int) -> list[tuple]:
    storage = version_storage(model_version=model_version)
    sql = _NEAREST_OTHER_PRODUCTS.format(
        a=storage.sql(dim, alias="a"), b=storage.sql(dim, alias="b"), version=int(model_version.pk), limit=int(limit)
    )
    with hnsw_scan(ef_search=EF_SEARCH), connection.cursor() as cursor:  # the settings end with the block
        cursor.execute(sql, [ids])
        return cursor.fetchall()


def _embedding_ids(model_version: ModelVersion) -> list[int]:
    return list(ImageEmbedding.objects.filter(model_version=model_version).order_by("id").values_list("id", flat=True))


def duplicate_threshold_default(*, model_version: ModelVersion, sample: int = THRESHOLD_SAMPLE) -> float | None:
    """THRESHOLD_FRACTION × the median nearest-other-product distance over an evenly spaced sample of
    the version's images; None when fewer than two products have vectors."""
    dim = version_dim(model_version=model_version, storage=version_storage(model_version=model_version))
    ids = _embedding_ids(model_version)
    if dim is None or len(ids) < 2:
        return None
    step = max(1, len(ids) // sample)
    rows = _nearest_other(model_version=model_version, dim=dim, ids=ids[::step][:sample], limit=1)
    if not rows:
        return None
    return THRESHOLD_FRACTION * float(np.median([row[4] for row in rows]))


def duplicate_pairs(
    *,
    model_version: ModelVersion,
    threshold: float,
    neighbours: int = NEIGHBOURS,
    progress: Callable[[int, int], None] | None = None,
) -> list[DuplicatePair]:
    """Pairs of different products with images within `threshold` (L2) of each other, closest first,
    each pair once (by its closest images). Looks at the `neighbours` nearest other products of every
    image; `progress(done, total)` is called after each chunk of images."""
    dim = version_dim(model_version=model_version, storage=version_storage(model_version=model_version))
    ids = _embedding_ids(model_version)
    best: dict[tuple[int, int], DuplicatePair] = {}
    if dim is None:
        return []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for pa, ia, pb, ib, distance in _nearest_other(
            model_version=model_version, dim=dim, ids=chunk, limit=neighbours
        ):
            if distance > threshold:
                continue
            if pa > pb:
                pa, ia, pb, ib = pb, ib, pa, ia
            pair = best.get((pa, pb))
            if pair is None or distance < pair.distance:
                best[(pa, pb)] = DuplicatePair(pa, ia, pb, ib, float(distance))
        if progress is not None:
            progress(min(start + CHUNK, len(ids)), len(ids))
    return sorted(best.values(), key=lambda p: (p.distance, p.product_a, p.product_b))


@dataclass(frozen=True)
class DuplicateRow:
    """A pair with both products and images loaded, for the admin page."""

    pair: DuplicatePair
    product_a: Product
    image_a: ProductImage | None
    product_b: Product
    image_b: ProductImage | None


def duplicate_rows(pairs: list[DuplicatePair]) -> list[DuplicateRow]:
    """Load the products and images of `pairs` in two queries."""
    product_ids = {p.product_a for p in pairs} | {p.product_b for p in pairs}
    products = Product.objects.select_related("category").in_bulk(product_ids)
    images = ProductImage.objects.in_bulk({p.image_a for p in pairs} | {p.image_b for p in pairs})
    return [
        DuplicateRow(p, products[p.product_a], images.get(p.image_a), products[p.product_b], images.get(p.image_b))
        for p in pairs
        if p.product_a in products and p.product_b in products
    ]
