"""Keyword search over the catalogue: PostgreSQL full text, with a trigram fallback for typos.

Each product's `search_vector` (title and SKU weight A, category B, description C) is written by a
trigger (catalog/migrations/0002_product_search.py) and GIN-indexed. A query is parsed with
`websearch_to_tsquery`, which accepts anything a shopper types ("red dress", "-boot", quotes, stray
punctuation) without a syntax error, and results rank by `ts_rank`. When full text finds nothing,
titles are matched by pg_trgm word similarity instead (GIN trigram index), so "sneakr" still finds
"Sneaker". The search app narrows photo searches with the same matching (product_keyword_match).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.db.models import F, QuerySet

from .models import Category, Product

SEARCH_CONFIG = "english"
QUERY_MAX_LENGTH = 200


class Match:
    """How the products were found: every product (no words), by full text, or by similar words."""

    ALL = "all"
    WORDS = "words"
    SIMILAR = "similar"


@dataclass
class KeywordResults:
    products: QuerySet[Product]  # ranked, best first
    match: str  # a Match constant
    query: str


def _filtered(
    products: QuerySet[Product], *, category: Category | None, min_price: Decimal | None, max_price: Decimal | None
) -> QuerySet[Product]:
    if category is not None:
        products = products.filter(category=category)
    if min_price is not None:
        products = products.filter(price__gte=min_price)
    if max_price is not None:
        products = products.filter(price__lte=max_price)
    return products


def product_keyword_match(
    *,
    query: str,
    category: Category | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    products: QuerySet[Product] | None = None,
) -> KeywordResults:
    """Products matching `query` and the filters, ranked: full text first, and only when full text
    finds nothing, trigram word similarity of titles. An empty query matches every product (by id).

    One query (an EXISTS) to choose between the two, before the results are read.
    """
    query = query.strip()
    products = _filtered(Product.objects.all() if products is None else products, category=category, min_price=min_price, max_price=max_price)
    if not query:
        return KeywordResults(products=products.order_by("id"), match=Match.ALL, query=query)
    tsquery = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    words = products.filter(search_vector=tsquery)
    if words.exists():
        ranked = words.annotate(rank=SearchRank(F("search_vector"), tsquery)).order_by("-rank", "id")
        return KeywordResults(products=ranked, match=Match.WORDS, query=query)
    similar = (
        products.filter(title__trigram_word_similar=query)
        .annotate(rank=TrigramWordSimilarity(query, "title"))
        .order_by("-rank", "id")
    )
    return KeywordResults(products=similar, match=Match.SIMILAR, query=query)


def product_search(
    *,
    query: str = "",
    category: Category | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> KeywordResults:
    """What the catalogue page and GET /api/products list: product_keyword_match over products with
    their category and images (a page of them is read in two queries)."""
    return product_keyword_match(
        query=query, category=category, min_price=min_price, max_price=max_price, products=Product.objects.browsable()
    )
