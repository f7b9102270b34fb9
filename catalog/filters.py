"""The catalogue's category and price filters, defined once: a condition for any table that carries a
product's `category` and `price` (Product, and search's vector rows, which copy both)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Q


def catalogue_filter(
    *, category_id: int | None = None, min_price: Decimal | None = None, max_price: Decimal | None = None
) -> Q:
    """Rows in the category (when given) priced within [min_price, max_price] (each bound when given);
    an empty Q (every row) when nothing is given. A product without a price matches no price bound."""
    condition = Q()
    if category_id is not None:
        condition &= Q(category_id=category_id)
    if min_price is not None:
        condition &= Q(price__gte=min_price)
    if max_price is not None:
        condition &= Q(price__lte=max_price)
    return condition
