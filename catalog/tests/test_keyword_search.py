"""Keyword search on real PostgreSQL: full text with weights, the trigger-kept vector, the pg_trgm
fallback, filters, the page and GET /api/products, and hostile input."""

from __future__ import annotations

from decimal import Decimal

from unittest import mock

from django.core.cache import cache
from django.db import connection
from django.test import TestCase
from django.urls import reverse

from catalog.keyword_search import Match, product_keyword_match, product_search
from catalog.models import Category, Product
from catalog.tests.factories import category_create, product_create

LIST = reverse("catalog:product_list")
API = reverse("catalog:api_product_list")


def bitmap_plan(queryset) -> str:
    """EXPLAIN of `queryset` with only bitmap scans left enabled: on a few rows a full scan of any
    b-tree (e.g. the category index, with the match as a filter) can cost the same as the index
    the query is meant to use."""
    with connection.cursor() as cursor:
        for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


class KeywordSearchTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.dresses = category_create("Dresses")
        cls.shoes = category_create("Shoes")
        cls.red_dress = product_create(
            category=cls.dresses, title="Red summer dress", price=Decimal("49.00"), sku="DR-RED-01"
        )
        cls.blue_dress = product_create(
            category=cls.dresses,
            title="Blue evening gown",
            price=Decimal("120.00"),
            description="A long dress for evenings.",
        )
        cls.sneaker = product_create(
            category=cls.shoes, title="Running sneaker", price=Decimal("80.00"), description="Red laces."
        )
        cls.boot = product_create(category=cls.shoes, title="Ankle boot", price=Decimal("150.00"))

    def setUp(self):
        cache.clear()

    def titles(self, **kwargs) -> list[str]:
        return [p.title for p in product_search(**kwargs).products]


class FullTextTests(KeywordSearchTestCase):
    def test_title_words_outrank_description_words(self):
        # "dress" is in the first title (weight A) and only in the second description (weight C).
        self.assertEqual(self.titles(query="dress"), ["Red summer dress", "Blue evening gown"])

    def test_category_name_is_searched(self):
        results = product_search(query="shoes")
        self.assertEqual(results.match, Match.WORDS)
        self.assertEqual({p.title for p in results.products}, {"Running sneaker", "Ankle boot"})

    def test_sku_is_searched_as_typed(self):
        self.assertEqual(self.titles(query="DR-RED-01"), ["Red summer dress"])

    def test_stemming_finds_plural_and_all_words_must_match(self):
        self.assertEqual(self.titles(query="sneakers"), ["Running sneaker"])
        self.assertEqual(self.titles(query="red dress"), ["Red summer dress"])  # the sneaker has only "red"

    def test_websearch_syntax_excludes_words(self):
        self.assertEqual(self.titles(query="red -dress"), ["Running sneaker"])

    def test_vector_follows_edits_and_category_renames(self):
        self.boot.title = "Chelsea boot"
        self.boot.save()
        self.assertEqual(self.titles(query="chelsea"), ["Chelsea boot"])
        self.assertEqual(product_search(query="ankle").match, Match.SIMILAR)  # no longer a word of any product
        Category.objects.filter(pk=self.shoes.pk).update(name="Footwear")
        self.assertEqual(
            {p.title for p in product_search(query="footwear").products}, {"Running sneaker", "Chelsea boot"}
        )
        self.assertNotEqual(product_search(query="shoes").match, Match.WORDS)

    def test_bulk_created_products_are_searchable(self):
        Product.objects.bulk_create([Product(sku="BULK-1", title="Woollen scarf", category=self.shoes)])
        self.assertEqual(self.titles(query="scarf"), ["Woollen scarf"])

    def test_full_text_uses_the_gin_index(self):
        self.assertIn("catalog_product_search_gin", bitmap_plan(product_search(query="dress").products))


class SkuTests(KeywordSearchTestCase):
    def test_a_sku_in_any_case_finds_that_product_alone(self):
        product_create(category=self.dresses, title="Green dress", description="Goes with DR-RED-01.")
        for typed in ("DR-RED-01", "dr-red-01", " Dr-Red-01 "):
            results = product_search(query=typed)
            self.assertEqual(
                (results.match, [p.title for p in results.products]), (Match.SKU, ["Red summer dress"]), typed
            )
        self.assertEqual(self.client.get(API, {"q": "dr-red-01"}).json()["match"], "sku")

    def test_a_sku_outside_the_filters_is_not_found_by_sku(self):
        results = product_search(query="dr-red-01", category=self.shoes)
        self.assertNotEqual(results.match, Match.SKU)
        self.assertEqual(list(results.products), [])

    def test_a_word_that_is_no_sku_goes_to_full_text(self):
        self.assertEqual(product_search(query="red").match, Match.WORDS)
        self.assertEqual(product_search(query="red dress").match, Match.WORDS)  # two words are never a SKU

    def test_sku_lookup_uses_the_upper_index(self):
        self.assertIn("catalog_product_sku_upper", bitmap_plan(product_search(query="dr-red-01").products))


class RankedPagesTests(KeywordSearchTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        for i in range(5):
            product_create(category=cls.dresses, title=f"Dress {i}", description="dress " * i, images=[])

    def test_pages_are_the_ranked_matches_in_order(self):
        results = product_search(query="dress")
        every = [(p.pk, p.rank) for p in results.products]
        pages = results.pages()
        self.assertEqual([(p.pk, p.rank) for p in pages[0:3]] + [(p.pk, p.rank) for p in pages[3:10]], every)
        self.assertEqual(pages[1].pk, every[1][0])
        self.assertEqual((pages.count(), pages.capped), (len(every), False))

    def test_a_page_reads_its_rows_by_id_with_category_and_images(self):
        pages = product_search(query="dress").pages()
        with self.assertNumQueries(2):  # the ranked ids with the rows, their images
            page = pages[0:4]
            [(p.category.name, p.primary_image) for p in page]

    def test_counts_stop_at_the_cap_and_pages_beyond_are_not_offered(self):
        pages = product_search(query="dress").pages(count_up_to=3)
        self.assertEqual((pages.count(), pages.capped), (3, True))
        with mock.patch("catalog.keyword_search.COUNT_UP_TO", 3):
            response = self.client.get(LIST, {"q": "dress"})
            self.assertContains(response, "3+ products")
            body = self.client.get(API, {"q": "dress", "page_size": 2}).json()
            self.assertEqual((body["count"], body["count_exact"], body["num_pages"]), (3, False, 2))
            missing = self.client.get(API, {"q": "dress", "page_size": 2, "page": 3})
            self.assertEqual(missing.status_code, 404)
            self.assertIn("narrow the words", missing.json()["error"])
        body = self.client.get(API, {"q": "dress"}).json()
        self.assertEqual((body["count"], body["count_exact"]), (7, True))

    def test_the_typo_fallback_is_paged_the_same_way(self):
        results = product_search(query="dres", correct=False)
        self.assertEqual(results.match, Match.SIMILAR)
        self.assertEqual([p.pk for p in results.pages()[0:20]], [p.pk for p in results.products])


class TypoFallbackTests(KeywordSearchTestCase):
    """The trigram fallback, with typo correction off (catalog/tests/test_typos.py tests that)."""

    def test_a_misspelt_word_finds_similar_titles(self):
        results = product_search(query="sneakr", correct=False)
        self.assertEqual(results.match, Match.SIMILAR)
        self.assertEqual([p.title for p in results.products], ["Running sneaker"])

    def test_fallback_only_when_full_text_finds_nothing(self):
        self.assertEqual(product_search(query="sneaker").match, Match.WORDS)

    def test_nothing_similar_is_an_empty_result(self):
        results = product_search(query="xylophone")
        self.assertEqual((results.match, list(results.products)), (Match.SIMILAR, []))

    def test_fallback_uses_the_trigram_index(self):
        self.assertIn(
            "catalog_product_title_trgm", bitmap_plan(product_keyword_match(query="sneakr", correct=False).products)
        )


class FilterTests(KeywordSearchTestCase):
    def test_category_and_price_filters_with_and_without_words(self):
        self.assertEqual(self.titles(query="red", category=self.shoes), ["Running sneaker"])
        self.assertEqual(self.titles(query="dress", max_price=Decimal("100")), ["Red summer dress"])
        self.assertEqual(
            self.titles(min_price=Decimal("100"), max_price=Decimal("150")), ["Blue evening gown", "Ankle boot"]
        )
        self.assertEqual(self.titles(query="sneakr", min_price=Decimal("90")), [])

    def test_keyword_match_narrows_a_given_queryset(self):
        results = product_keyword_match(query="red", products=Product.objects.filter(price__lt=60))
        self.assertEqual([p.pk for p in results.products], [self.red_dress.pk])


class PageTests(KeywordSearchTestCase):
    def test_results_page_ranks_and_keeps_the_words_in_the_header_box(self):
        response = self.client.get(LIST, {"q": "dress"})
        self.assertEqual(
            [p.title for p in response.context["page"].object_list], ["Red summer dress", "Blue evening gown"]
        )
        self.assertContains(response, "Results for “dress”")
        self.assertContains(response, 'name="q" value="dress"')

    def test_the_header_box_is_on_every_page(self):
        for url in (LIST, self.red_dress.get_absolute_url(), reverse("search:photo_search")):
            self.assertContains(self.client.get(url), 'id="header-q"', msg_prefix=url)

    def test_typo_page_says_it_shows_similar_words(self):
        response = self.client.get(LIST, {"q": "sneakr", "exact": "1"})
        self.assertContains(response, "data-similar-words")
        self.assertContains(response, "Running sneaker")

    def test_pagination_keeps_the_words_and_filters(self):
        for i in range(50):
            product_create(category=self.dresses, title=f"Plain dress {i}", price=Decimal("30.00"), images=[])
        response = self.client.get(LIST, {"q": "dress", "max_price": "60"})
        self.assertEqual(response.context["page"].paginator.count, 51)
        self.assertContains(response, 'href="?q=dress&amp;max_price=60&amp;page=2"')
        second = self.client.get(LIST, {"q": "dress", "max_price": "60", "page": 2})
        self.assertEqual(len(second.context["page"].object_list), 3)

    def test_no_match_is_an_empty_state(self):
        response = self.client.get(LIST, {"q": "xylophone"})
        self.assertContains(response, "Nothing matches “xylophone”")

    def test_query_count_is_fixed(self):
        # navigation categories, EXISTS (full text or fallback), count, page of products, their images
        with self.assertNumQueries(5):
            self.client.get(LIST, {"q": "dress"})
        for i in range(30):
            product_create(category=self.dresses, title=f"Plain dress {i}")
        cache.clear()
        with self.assertNumQueries(6):  # + the category named by its slug
            response = self.client.get(LIST, {"q": "dress", "category": "dresses", "min_price": "1"})
        self.assertEqual(len(response.context["page"].object_list), 32)


class HostileInputTests(KeywordSearchTestCase):
    def assertRefused(self, params: dict, message: str) -> None:
        page = self.client.get(LIST, params)
        self.assertContains(page, message, status_code=400)
        api = self.client.get(API, params)
        self.assertEqual(api.status_code, 400)
        self.assertIn(message, api.json()["error"])

    def test_empty_and_blank_words_list_everything(self):
        for q in ("", "   "):
            self.assertEqual(self.client.get(API, {"q": q}).json()["count"], 4)

    def test_ten_thousand_characters_are_refused(self):
        self.assertRefused({"q": "a" * 10_000}, "at most 200 characters")

    def test_nul_bytes_are_refused(self):
        # The request guard (config.middleware) refuses control characters before any view runs.
        self.assertRefused({"q": "dress\x00"}, "contains a control character")
        self.assertNotIn(b"dress\x00", self.client.get(LIST, {"q": "dress\x00"}).content)

    def test_bad_prices_are_refused(self):
        self.assertRefused({"min_price": "-5"}, "greater than or equal to 0")
        self.assertRefused({"max_price": "cheap"}, "Enter a price as a number")
        self.assertRefused({"max_price": "NaN"}, "Enter a price as a number")
        self.assertRefused({"min_price": "1e400"}, "less than or equal to 99999999")
        self.assertRefused({"min_price": "90", "max_price": "10"}, "above the max price")

    def test_sql_and_query_syntax_are_just_words(self):
        for q in ("'; DROP TABLE catalog_product; --", "dress' OR 1=1 --", '!!! & | ( ) : * "', "the", "<->"):
            response = self.client.get(API, {"q": q})
            self.assertEqual(response.status_code, 200, q)
        self.assertEqual(Product.objects.count(), 4)

    def test_html_in_the_words_is_escaped(self):
        response = self.client.get(LIST, {"q": "<script>alert(1)</script>"})
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "<script>alert(1)</script>")
        self.assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt;")

    def test_unknown_category(self):
        self.assertEqual(self.client.get(LIST, {"category": "nope"}).status_code, 404)
        response = self.client.get(API, {"category": "nope"})
        self.assertEqual(
            (response.status_code, response.json()["error"]), (400, "Category: There is no category “nope”.")
        )


class ApiTests(KeywordSearchTestCase):
    def test_same_results_as_the_page_with_fields(self):
        body = self.client.get(API, {"q": "red", "category": "shoes", "max_price": "100"}).json()
        self.assertEqual(
            (body["query"], body["match"], body["count"], body["page"], body["num_pages"]), ("red", "words", 1, 1, 1)
        )
        [item] = body["results"]
        self.assertEqual(
            {k: item[k] for k in ("id", "sku", "title", "category", "price")},
            {
                "id": self.sneaker.pk,
                "sku": self.sneaker.sku,
                "title": "Running sneaker",
                "category": "shoes",
                "price": "80.00",
            },
        )
        self.assertTrue(item["url"].endswith(self.sneaker.get_absolute_url()))
        self.assertIn("/media/", item["image_url"])
        self.assertGreater(item["rank"], 0)

    def test_paging(self):
        body = self.client.get(API, {"page_size": 3, "page": 2}).json()
        self.assertEqual(
            (body["count"], body["num_pages"], [r["title"] for r in body["results"]]), (4, 2, ["Ankle boot"])
        )
        self.assertIsNone(body["results"][0]["rank"])
        self.assertEqual(self.client.get(API, {"page": 3, "page_size": 3}).status_code, 404)
        for params in ({"page": "x"}, {"page": 0}, {"page_size": 101}, {"page_size": "-1"}):
            self.assertEqual(self.client.get(API, params).status_code, 400, params)

    def test_query_count(self):
        with self.assertNumQueries(4):  # EXISTS, count, products, images (the API has no navigation)
            self.client.get(API, {"q": "dress"})

    def test_get_only(self):
        self.assertEqual(self.client.post(API).status_code, 405)
