"""Photo + words: the nearest products among those matching a keyword search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db.models import QuerySet

from catalog.models import Product

from .nearest import Neighbour, nearest_products

__all__ = ["HYBRID_EXACT_BELOW", "HYBRID_SCAN_TUPLES", "keyword_neighbours"]


HYBRID_EXACT_BELOW = 2000
HYBRID_SCAN_TUPLES = 200  # about two ef_search passes: enough when the words agree with the photo


def keyword_neighbours(
    *,
    model_version_id: int,
    vector: Sequence[float] | np.ndarray,
    k: int,
    products: QuerySet[Product],
    exact_below: int = HYBRID_EXACT_BELOW,
    scan_tuples: int = HYBRID_SCAN_TUPLES,
    **filters,
) -> list[Neighbour]:
    """The k products among `products` (those matching a keyword search) nearest to `vector`.

    Few matches (at most `exact_below`, counted with a LIMIT): their vectors are ranked exactly,
    through the product index. Many: first the HNSW query with the keyword query as a subquery
    filter, its iterative scan bounded to `scan_tuples` rows; that finds k rows at once when the words
    agree with the photo. When they do not (a photo of a shoe, the word "dress"), the nearest matches
    lie far out in the graph, and walking there costs more (measured at 60k: 0.5 s with pgvector's
    default bound of 20,000, 15-25 ms with 2,000) than ranking the matches exactly, which is done
    instead; so the walk is kept short, and the answer is exact either way.
    """
    query = {"model_version_id": model_version_id, "vector": vector, "k": k, "products": products, **filters}
    if products.order_by().values("pk")[: exact_below + 1].count() <= exact_below:
        return nearest_products(**query, exact=True)
    found = nearest_products(**query, max_scan_tuples=scan_tuples)
    if len(found) >= k:
        return found
    return nearest_products(**query, exact=True)
