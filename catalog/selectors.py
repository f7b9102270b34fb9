"""Reading the catalogue."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from .models import Category, Product


def category_list() -> QuerySet[Category]:
    return Category.objects.annotate(product_count=Count("products")).order_by("name")


def product_list(*, category: Category | None = None) -> QuerySet[Product]:
    products = Product.objects.browsable()
    if category is not None:
        products = products.filter(category=category)
    return products.order_by("id")
