"""Keyword search over the catalogue: PostgreSQL full text, typo correction, and a trigram fallback.

Each product's `search_vector` (title and SKU weight A, category B, description C) is written by a
trigger (catalog/migrations/0002_product_search.py) and GIN-indexed. A query is parsed with
`websearch_to_tsquery`, which accepts anything a shopper types ("red dress", "-boot", quotes, stray
punctuation) without a syntax error, and results rank by `ts_rank`. When full text finds nothing,
the query's misspelt words are corrected to the catalogue's own words (catalog/spelling.py: "sneker"
-> "sneaker", "ankel boot" -> "ankle boot") and the corrected query runs the same way. Words typed
right always win: the query as typed is tried first (and found empty without reading a row when
one of its words is in no product), and no known word is changed. `correct=False` turns correction
off (the page's "search instead for" link). Only when neither finds anything are titles matched by
pg_trgm word similarity (GIN trigram index). A query that is exactly a product's SKU (any case)
finds that product alone, through an index on UPPER(sku); only a single token with a digit in it
is tried as a SKU, so plain words cost no extra query. The search app narrows photo searches with
the same matching (product_keyword_match), typo correction included.

A results page reads `KeywordResults.pages()`, not the QuerySet: the matches are ranked in a query
that reads only ids (a rank computed over thousands of matches is cheap; carrying their whole rows,
descriptions and all, through the sort and a join is not: 20 ms against 6 ms for the 6,000 dresses
of Fashion-MNIST), and a page's rows are then read by id. Counts stop at COUNT_UP_TO: past that a
page says "1,000+ products", and deeper pages are not offered (a shopper refines the words instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.postgres.search import (
    SearchQuery,
    SearchRank,
    TrigramWordSimilarity,
)
from django.db.models import Expression, F, FloatField, QuerySet, Value

from .filters import catalogue_filter
from .models import Category, Product
from .spelling import Correction, query_correct, words_known

SEARCH_CONFIG = "english"
QUERY_MAX_LENGTH = 200
COUNT_UP_TO = 1000  # results pages count matches up to this many (then "1,000+")
# websearch syntax under which a word that no product has can still be part of a match ("red or
# xyzzy", "-xyzzy dress")
ANY_OR_NOT = re.compile(r"(?:^|\s)(?:or\s|-\S)", re.IGNORECASE)
SKU_LIKE = re.compile(r"(?=\S*\d)[\w.\-/#]{2,64}")  # one token with a digit, as SKUs are: "dress" is not tried


class Match:
    """How the products were found: every product (no words), by full text, or by similar words."""

    ALL = "all"
    SKU = "sku"
    WORDS = "words"
    SIMILAR = "similar"


class RankedPages:
    """Ranked matches as django.core.paginator.Paginator reads them: `count()` counts up to
    `count_up_to` (`capped` says whether there were more), and a slice ranks ids only, then reads
    that page's rows (`rows`, e.g. with their category and images) with the rank annotated."""

    def __init__(self, ranked: QuerySet[Product], rows: QuerySet[Product], rank: Expression, count_up_to: int):
        self.ranked, self.rows, self.rank, self.count_up_to = ranked, rows, rank, count_up_to
        self.capped = False

    def count(self) -> int:
        found = self.ranked.order_by().values("pk")[: self.count_up_to + 1].count()
        self.capped = found > self.count_up_to
        return min(found, self.count_up_to)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        page = self.ranked.values("pk")[index]
        return list(self.rows.filter(pk__in=page).annotate(rank=self.rank).order_by("-rank", "id"))


@dataclass
class KeywordResults:
    products: QuerySet[Product]  # every match, ranked, best first (photo + words narrows by it)
    match: str  # a Match constant
    query: str
    rank: Expression | None = None  # how `products` are ranked among many; None: by id, or one SKU
    rows: QuerySet[Product] | None = None  # what a page reads its rows from (the filters, not the words)
    corrected_query: str | None = None  # what was searched instead of `query`, its typos corrected
    corrections: list[Correction] = field(default_factory=list)  # the words it changed

    def pages(self, count_up_to: int | None = None) -> QuerySet[Product] | RankedPages:
        """What a results page paginates: the QuerySet itself when nothing is ranked (the whole
        catalogue, counted exactly, or one SKU), ranked pages otherwise."""
        if self.rank is None:
            return self.products
        ranked = self.products.select_related(None).prefetch_related(None)
        return RankedPages(ranked, self.rows, self.rank, COUNT_UP_TO if count_up_to is None else count_up_to)


def _filtered(
    products: QuerySet[Product], *, category: Category | None, min_price: Decimal | None, max_price: Decimal | None
) -> QuerySet[Product]:
    return products.filter(
        catalogue_filter(category_id=category.pk if category else None, min_price=min_price, max_price=max_price)
    )


def _full_text(products: QuerySet[Product], query: str, *, known_words_only: bool = False) -> KeywordResults | None:
    """Full-text matches of `query`, ranked, or None when there are none (at once, without reading a
    row, with `known_words_only` when one of its words is no catalogue word: spelling.words_known)."""
    tsquery = SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)
    words = products.filter(search_vector=tsquery)
    known = words_known(query) if known_words_only else None
    if not (words.filter(known) if known is not None else words).exists():
        return None
    rank = SearchRank(F("search_vector"), tsquery)
    ranked = words.annotate(rank=rank).order_by("-rank", "id")
    return KeywordResults(products=ranked, match=Match.WORDS, query=query, rank=rank, rows=products)


def product_keyword_match(
    *,
    query: str,
    category: Category | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    products: QuerySet[Product] | None = None,
    correct: bool = True,
) -> KeywordResults:
    """Products matching `query` and the filters, ranked: the product whose SKU the query is, else full
    text, else (with `correct`) full text of the query with its typos corrected, and only when those
    find nothing, trigram word similarity of titles. An empty query matches every product (by id).

    One query (an EXISTS) per way of matching tried, before the results are read; correcting adds
    one more (catalog.spelling.query_correct's vocabulary lookup).
    """
    query = query.strip()
    products = _filtered(
        Product.objects.all() if products is None else products,
        category=category,
        min_price=min_price,
        max_price=max_price,
    )
    if not query:
        return KeywordResults(products=products.order_by("id"), match=Match.ALL, query=query)
    if SKU_LIKE.fullmatch(query):
        sku = products.filter(sku__iexact=query)  # catalog_product_sku_upper
        if sku.exists():
            # One row, ranked 1: paginated as it is (no `rank` for RankedPages).
            return KeywordResults(
                products=sku.annotate(rank=Value(1.0, output_field=FloatField())), match=Match.SKU, query=query
            )
    found = _full_text(products, query, known_words_only=correct)
    if found is not None:
        return found
    if correct:
        corrected = query_correct(query)
        if corrected is not None:
            found = _full_text(products, corrected.query, known_words_only=True)
            if found is not None:
                found.query, found.corrected_query, found.corrections = query, corrected.query, corrected.corrections
                return found
        if ANY_OR_NOT.search(query):  # as typed after all: "red or xyzzy" finds red
            found = _full_text(products, query)
            if found is not None:
                return found
    rank = TrigramWordSimilarity(query, "title")
    similar = products.filter(title__trigram_word_similar=query).annotate(rank=rank).order_by("-rank", "id")
    return KeywordResults(products=similar, match=Match.SIMILAR, query=query, rank=rank, rows=products)


def product_search(
    *,
    query: str = "",
    category: Category | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    correct: bool = True,
) -> KeywordResults:
    """What the catalogue page and GET /api/products list: product_keyword_match over products with
    their category and images (a page of them is read in two queries)."""
    return product_keyword_match(
        query=query,
        category=category,
        min_price=min_price,
        max_price=max_price,
        products=Product.objects.browsable(),
        correct=correct,
    )
