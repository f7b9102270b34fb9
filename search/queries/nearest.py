"""The k nearest products to a vector under one model version: the one ANN query every use shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db.models import BooleanField, Expression, F, QuerySet, Subquery
from pgvector.django import L2Distance

from catalog.filters import catalogue_filter
from catalog.models import Product

from ..models import ImageEmbedding
from ..serving.hnsw import hnsw_scan
from ..serving.versions import version_storage
from ..storage import VectorStorage

__all__ = ["AnyOf", "Neighbour", "nearest_products"]


@dataclass(frozen=True)
class Neighbour:
    product_id: int
    image_id: int
    distance: float


class AnyOf(Expression):
    """`column = ANY(ARRAY(subquery))`, a condition: the subquery runs once, as an InitPlan, and its
    ids are looked up in the column's index."""

    output_field = BooleanField()

    def __init__(self, column: str, queryset: QuerySet):
        super().__init__()
        self.column, self.subquery = F(column), Subquery(queryset)

    def get_source_expressions(self) -> list:
        return [self.column, self.subquery]

    def set_source_expressions(self, expressions) -> None:
        self.column, self.subquery = expressions

    def as_sql(self, compiler, connection):
        column_sql, column_params = compiler.compile(self.column)
        subquery_sql, subquery_params = compiler.compile(self.subquery)  # "(SELECT ...)"
        return f"{column_sql} = ANY(ARRAY{subquery_sql})", (*column_params, *subquery_params)


def nearest_products(
    *,
    model_version_id: int,
    vector: Sequence[float] | np.ndarray,
    k: int,
    exclude_product_id: int | None = None,
    category_id: int | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    products: QuerySet[Product] | Sequence[int] | None = None,
    exact: bool = False,
    max_scan_tuples: int | None = None,
    storage: VectorStorage | None = None,
    rank_vector: Sequence[float] | np.ndarray | None = None,
) -> list[Neighbour]:
    """The k products nearest to `vector` under one model version, closest first, each product once
    (by its closest image).

    Uses the version's partial HNSW index: the ORDER BY casts the version's column to vector(D) or
    halfvec(D) (its `storage`, looked up when not given) and filters by model_version_id exactly as
    the index does, and pgvector 0.8's iterative scan (relaxed_order) keeps filtered queries
    returning k rows. `exact=True` orders by the uncast column, which no index matches: a sequential
    scan, for checking recall. `products` (a queryset, run as a
    subquery, or ids) keeps only those products: a filter inside the vector query, like category.
    `max_scan_tuples` bounds how far the iterative scan walks (pgvector's default is 20,000).
    `rank_vector` (search.queries.weights): rank by the distance to it instead, and still report the
    distance to `vector`.
    """
    vector = np.asarray(vector, dtype=np.float32)
    dim = int(vector.shape[0])
    rows = ImageEmbedding.objects.filter(model_version_id=model_version_id)
    if exclude_product_id is not None:
        rows = rows.exclude(product_id=exclude_product_id)
    rows = rows.filter(catalogue_filter(category_id=category_id, min_price=min_price, max_price=max_price))
    if isinstance(products, QuerySet) and exact:
        # product_id = ANY(ARRAY(subquery)): the matches are read once and their rows fetched through
        # the product index, where IN (subquery) hash-joins them against a scan of every vector of the
        # version (at 60k, 6,000 matches: 16 ms against 35).
        rows = rows.filter(AnyOf("product_id", products.order_by().values("pk")))
    elif products is not None:
        rows = rows.filter(
            product_id__in=products.order_by().values("pk") if isinstance(products, QuerySet) else list(products)
        )
    if storage is None:
        storage = version_storage(model_version=model_version_id)
    column = F(storage.column) if exact else storage.cast(dim)
    if rank_vector is None:
        rows = rows.annotate(distance=L2Distance(column, vector)).order_by("distance")
        columns = ("product_id", "image_id", "distance", "distance")
    else:
        rows = rows.annotate(
            rank=L2Distance(column, np.asarray(rank_vector, dtype=np.float32)),
            distance=L2Distance(F(storage.column), vector),
        ).order_by("rank")
        columns = ("product_id", "image_id", "rank", "distance")
    limit = k * 2  # most products have one image; a product's extra images may crowd others out
    alias = rows.db  # the primary, or the request's read replica (config/replicas.py): the settings go with it
    # The settings end with the block, also inside a caller's transaction (hnsw_scan).
    with hnsw_scan(
        using=alias, ef_search=max(settings.HNSW_EF_SEARCH, min(limit, 1000)), max_scan_tuples=max_scan_tuples
    ):
        while True:
            found = list(rows.values_list(*columns)[:limit])
            best: dict[int, tuple[float, Neighbour]] = {}
            for product_id, image_id, rank, distance in found:
                if product_id not in best or rank < best[product_id][0]:
                    best[product_id] = (float(rank), Neighbour(product_id, image_id, float(distance)))
            if len(best) >= k or len(found) < limit:
                break
            limit *= 4
    # relaxed_order may return rows slightly out of order: sort here.
    return [n for _, n in sorted(best.values(), key=lambda r: (r[0], r[1].product_id))[:k]]
