"""`{% similar_items product k as similar %}`: the catalogue's pages get their similar items from
search through this tag, so catalog (below search) imports nothing of it."""

from django import template

from catalog.models import Product
from search.queries.similar import SimilarItems, product_similar

register = template.Library()


@register.simple_tag
def similar_items(product: Product, k: int, same_category: bool = False) -> SimilarItems:
    return product_similar(product=product, k=k, same_category=same_category)
