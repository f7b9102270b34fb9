"""Typo tolerance on real PostgreSQL: the catalogue's vocabulary kept by triggers (and built by its
migration), each kind of typo corrected within the edit budget, words typed right left alone, the
page's "Showing results for" and the API's fields, hostile input, and the candidate cap."""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, TransactionTestCase
from django.urls import reverse

from catalog import spelling
from catalog.keyword_search import Match, product_keyword_match, product_search
from catalog.models import Category, Product, SearchWord
from catalog.spelling import one_edit_variants, osa_distance, query_correct, query_words
from catalog.tests.factories import category_create, product_create

LIST = reverse("catalog:product_list")
API = reverse("catalog:api_product_list")


def vocabulary() -> dict[str, int]:
    """The products' text words and how many products have each."""
    return dict(SearchWord.objects.filter(products__gt=0).values_list("word", "products"))


def stored() -> dict[str, tuple[int, int]]:
    return {w: (p, k) for w, p, k in SearchWord.objects.values_list("word", "products", "skus")}


def recount() -> dict[str, tuple[int, int]]:
    """The vocabulary counted afresh from the products (as the migration builds it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT w, sum(t)::int, sum(k)::int FROM ("
            " SELECT w, 1 AS t, 0 AS k FROM catalog_product, unnest(search_words) AS w"
            " UNION ALL SELECT w, 0, 1 FROM catalog_product, unnest(catalog_search_words(sku)) AS w) c GROUP BY w"
        )
        return {w: (t, k) for w, t, k in cursor.fetchall()}


class VocabularyTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.shoes = category_create("Shoes")
        cls.sneaker = product_create(
            category=cls.shoes, title="Running sneaker #6", description="Red laces.", images=[]
        )
        cls.boot = product_create(category=cls.shoes, title="Ankle boot", description="Red leather boot.", images=[])

    def test_products_words_are_counted_once_per_product(self):
        words = vocabulary()
        self.assertEqual(
            {w: words[w] for w in ("shoes", "sneaker", "boot", "red", "ankle")},
            {"shoes": 2, "sneaker": 1, "boot": 1, "red": 2, "ankle": 1},
        )
        self.assertNotIn("6", words)  # digits are no words
        self.assertNotIn("#6", words)
        self.assertEqual(
            Product.objects.get(pk=self.boot.pk).search_words, ["ankle", "boot", "leather", "red", "shoes"]
        )

    def test_sku_letters_are_known_words_counted_apart(self):
        product_create(category=self.shoes, title="Canvas shoe", sku="DRSS-0042", images=[])
        self.assertEqual(SearchWord.objects.filter(word="drss").values_list("products", "skus").get(), (0, 1))
        self.assertEqual(SearchWord.objects.filter(word="sku").values_list("products", "skus").get(), (0, 2))
        Product.objects.filter(sku="DRSS-0042").update(sku="CNV-0042")
        self.assertFalse(SearchWord.objects.filter(word="drss").exists())
        self.assertEqual(SearchWord.objects.get(word="cnv").skus, 1)

    def test_stems_are_the_full_text_lexemes(self):
        product_create(category=self.shoes, title="Summer dresses and running shoes", images=[])
        stems = dict(SearchWord.objects.values_list("word", "stem"))
        self.assertEqual((stems["dresses"], stems["running"], stems["and"]), ("dress", "run", None))

    def test_bulk_insert_rename_and_delete_keep_the_counts(self):
        Product.objects.bulk_create(
            [Product(sku=f"B-{i}", title="Woollen scarf", category=self.shoes) for i in range(3)]
        )
        self.assertEqual((vocabulary()["scarf"], vocabulary()["shoes"]), (3, 5))
        self.boot.title = "Chelsea boot"
        self.boot.save()
        words = vocabulary()
        self.assertNotIn("ankle", words)
        self.assertEqual((words["chelsea"], words["boot"]), (1, 1))
        Product.objects.filter(sku__startswith="B-").update(title="Silk scarf")
        self.assertEqual((vocabulary()["silk"], vocabulary()["scarf"], vocabulary().get("woollen")), (3, 3, None))
        Product.objects.filter(sku="B-0").delete()
        self.assertEqual(vocabulary()["scarf"], 2)
        Product.objects.filter(sku__startswith="B-").delete()
        self.assertNotIn("scarf", vocabulary())
        self.assertEqual(stored(), recount())

    def test_a_price_change_leaves_the_words_alone(self):
        before = vocabulary()
        Product.objects.update(price=Decimal("12.00"))
        self.assertEqual(vocabulary(), before)

    def test_a_category_rename_moves_its_word(self):
        Category.objects.filter(pk=self.shoes.pk).update(name="Footwear")
        words = vocabulary()
        self.assertNotIn("shoes", words)
        self.assertEqual(words["footwear"], 2)
        self.assertEqual(stored(), recount())

    def test_corrections_follow_the_vocabulary(self):
        self.assertIsNone(query_correct("chelsae"))
        self.boot.title = "Chelsea boot"
        self.boot.save()
        self.assertEqual(query_correct("chelsae").query, "chelsea")


class MigrationBuildsTheVocabularyTests(TransactionTestCase):
    def migrate(self, target):
        MigrationExecutor(connection).migrate([target])
        return MigrationExecutor(connection).loader.project_state([target]).apps

    def tearDown(self):
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    def test_existing_products_words_are_counted(self):
        apps = self.migrate(("catalog", "0003_product_sku_upper"))
        category = apps.get_model("catalog", "Category").objects.create(name="Sneaker", slug="sneaker")
        apps.get_model("catalog", "Product").objects.create(sku="S-1", title="Sneaker #1", category=category)
        apps.get_model("catalog", "Product").objects.create(sku="S-2", title="White sneaker", category=category)
        self.migrate(("catalog", "0004_search_words"))
        self.assertEqual(vocabulary(), {"sneaker": 2, "white": 1})
        self.assertEqual(query_correct("snekaer").query, "sneaker")


class TyposTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.shoes = category_create("Sneaker")
        cls.dresses = category_create("Dress")
        cls.boots = category_create("Ankle boot")
        cls.coats = category_create("Coat")
        cls.sneakers = [
            product_create(category=cls.shoes, title=f"Sneaker #{i}", price=Decimal(20 + i), images=[])
            for i in range(3)
        ]
        cls.dress = product_create(category=cls.dresses, title="Red summer dress", sku="DR-RED-01", images=[])
        cls.boot = product_create(category=cls.boots, title="Ankle boot #1", images=[])
        cls.boot2 = product_create(category=cls.boots, title="Chelsea boot", images=[])
        cls.coat = product_create(category=cls.coats, title="Embroidered waistcoat", images=[])
        cls.boat = product_create(category=cls.coats, title="Boat neck coat", images=[])  # "boat": 1 product, "boot": 2

    def corrected(self, query: str) -> str | None:
        results = product_search(query=query)
        return results.corrected_query

    def found(self, query: str, **kwargs) -> set[int]:
        return {p.pk for p in product_search(query=query, **kwargs).products}


class CorrectionTests(TyposTestCase):
    def test_each_kind_of_one_letter_typo(self):
        for typed in ("sneker", "sneakr", "sneakeer", "sneqker", "snaeker", "snekaer"):
            results = product_search(query=typed)
            self.assertEqual((results.corrected_query, results.match), ("sneaker", Match.WORDS), typed)
            self.assertEqual({p.pk for p in results.products}, {p.pk for p in self.sneakers}, typed)
        self.assertEqual(self.corrected("drss"), "dress")
        self.assertEqual(self.corrected("ankel boot"), "ankle boot")

    def test_a_dropped_letter_of_a_four_letter_word(self):
        self.assertEqual(self.corrected("cot"), "coat")

    def test_two_typos_only_in_long_words(self):
        self.assertEqual(self.corrected("embrodired"), "embroidered")  # 11 letters: swap + drop
        self.assertEqual(self.found("waistcaot embrodiered"), {self.coat.pk})
        self.assertIsNone(self.corrected("snkaer"))  # two edits from a 7-letter word: beyond its budget
        self.assertIsNone(self.corrected("drs"))  # 3 letters for a 5-letter word

    def test_ties_go_to_the_word_more_products_have(self):
        self.assertEqual(self.corrected("bxot"), "boot")  # one edit from boot (2 products) and boat (1)

    def test_words_typed_right_always_win(self):
        results = product_search(query="boat")  # one edit from the more frequent "boot"
        self.assertEqual((results.corrected_query, [p.pk for p in results.products]), (None, [self.boat.pk]))
        self.assertEqual(product_search(query="sneaker").corrected_query, None)

    def test_plurals_and_stems_are_not_corrected(self):
        for typed in ("sneakers", "dresses", "boots", "Coats"):
            results = product_search(query=typed)
            self.assertEqual((results.match, results.corrected_query), (Match.WORDS, None), typed)
        # A known word outside the filters is not "corrected" into another word either.
        results = product_search(query="sneakers", category=self.dresses)
        self.assertEqual((results.corrected_query, list(results.products)), (None, []))

    def test_a_misspelt_plural_is_corrected_through_its_stem(self):
        self.assertEqual(self.corrected("snekers"), "sneaker")
        product_create(category=self.shoes, title="Trainers", images=[])
        product_create(category=self.shoes, title="Train case", images=[])
        product_create(category=self.shoes, title="Train set", images=[])
        # One edit from "trainers" as typed, one from "train" through its stem "trainr": as typed wins.
        self.assertEqual(self.corrected("trainrs"), "trainers")

    def test_sku_letters_are_never_a_correction(self):
        product_create(category=self.dresses, title="Linen shift", sku="DRS-7", images=[])
        product_create(category=self.dresses, title="Silk shift", sku="DRS-8", images=[])
        self.assertEqual(self.corrected("dres"), "dress")  # one edit from "drs" (2 SKUs) and "dress" (1 text)
        self.assertEqual(
            self.found("drs"), set(Product.objects.filter(sku__startswith="DRS-").values_list("pk", flat=True))
        )

    def test_skus_and_tokens_with_digits_are_never_changed(self):
        self.assertEqual([w for _, _, w in query_words("SNEKR-0042 sneker 10k drss")], ["sneker", "drss"])
        self.assertEqual(product_search(query="dr-red-01").match, Match.SKU)
        self.assertEqual(self.found("sneker 2"), {self.sneakers[2].pk})  # "Sneaker #2"
        self.assertEqual(query_correct("DRSS-01 sneker").query, "DRSS-01 sneaker")

    def test_or_and_not_are_corrected_and_unknown_words_in_them_left_alone(self):
        self.assertEqual(
            (self.corrected("sneker or chelsae"), self.found("sneker or chelsae")),
            ("sneaker or chelsea", {p.pk for p in self.sneakers} | {self.boot2.pk}),
        )
        self.assertEqual(self.found("dress or xyzzy"), {self.dress.pk})  # as typed: nothing to correct
        self.assertEqual(self.found("-xyzzy dress"), {self.dress.pk})

    def test_a_word_no_product_has_costs_no_scan(self):
        from django.contrib.postgres.search import SearchQuery

        from catalog.spelling import words_known

        words = Product.objects.filter(search_vector=SearchQuery("snekaer", search_type="websearch", config="english"))
        self.assertIn("One-Time Filter", words.filter(words_known("snekaer"))[:1].explain())
        self.assertFalse(words.filter(words_known("snekaer")).exists())
        self.assertTrue(Product.objects.filter(words_known("Sneakers, the dresses")).exists())
        self.assertFalse(Product.objects.filter(words_known("sneaker " + "x" * 65)).exists())

    def test_query_syntax_stays_as_typed(self):
        self.assertEqual(query_correct('"Ankel boot" -chelsae').query, '"ankle boot" -chelsea')
        self.assertEqual(self.found('"ankel boot" -chelsae'), {self.boot.pk})

    def test_filters_and_pages_apply_to_the_corrected_query(self):
        results = product_search(query="sneker", max_price=Decimal(21))
        self.assertEqual({p.pk for p in results.products}, {self.sneakers[0].pk, self.sneakers[1].pk})
        pages = results.pages()
        self.assertEqual([p.pk for p in pages[0:10]], [p.pk for p in results.products])
        self.assertEqual(pages.count(), 2)

    def test_nothing_in_reach_falls_back_to_similar_titles(self):
        results = product_search(query="xylophone")
        self.assertEqual((results.match, results.corrected_query, list(results.products)), (Match.SIMILAR, None, []))

    def test_correction_can_be_turned_off(self):
        results = product_search(query="sneker", correct=False)
        self.assertEqual((results.corrected_query, results.match), (None, Match.SIMILAR))

    def test_photo_search_words_are_corrected_too(self):
        results = product_keyword_match(query="ankel", products=Product.objects.all())
        self.assertEqual(
            ({p.pk for p in results.products}, results.corrected_query), ({self.boot.pk, self.boot2.pk}, "ankle")
        )


class DistanceTests(TestCase):
    def test_optimal_string_alignment(self):
        cases = [
            ("sneaker", "sneaker", 0),
            ("sneker", "sneaker", 1),
            ("snaeker", "sneaker", 1),
            ("ca", "abc", 3),
            ("snekaer", "sneaker", 1),
            ("embrodired", "embroidered", 2),
            ("coat", "caot", 1),
            ("kitten", "sitting", 3),
        ]
        for a, b, expected in cases:
            self.assertEqual(osa_distance(a, b, 5), expected, (a, b))
            self.assertEqual(osa_distance(b, a, 5), expected, (b, a))
        self.assertEqual(osa_distance("kitten", "sitting", 1), 2)  # stops past the limit

    def test_one_edit_variants_are_exactly_one_edit_away(self):
        variants = one_edit_variants("coat")
        self.assertTrue({"cot", "caot", "boat", "coats", "ocat"} <= variants)
        self.assertNotIn("coat", variants)
        self.assertTrue(all(osa_distance("coat", v, 1) == 1 for v in variants))


class PageAndApiTests(TyposTestCase):
    def test_page_says_what_it_shows_and_links_to_the_words_as_typed(self):
        response = self.client.get(LIST, {"q": "sneker"})
        self.assertContains(response, "Showing results for <b>sneaker</b>; search instead for")
        self.assertContains(response, '<a href="?q=sneker&amp;exact=1"><i>sneker</i></a>')
        self.assertContains(response, "Results for “sneaker”")
        self.assertEqual(len(response.context["page"].object_list), 3)
        self.assertNotContains(response, "data-similar-words")
        exact = self.client.get(LIST, {"q": "sneker", "exact": "1"})  # no title has a word this similar
        self.assertNotContains(exact, "Showing results for")
        self.assertContains(exact, "Nothing matches “sneker”")

    def test_the_typed_words_are_escaped_in_the_message(self):
        response = self.client.get(LIST, {"q": "sneker <i>"})
        self.assertContains(response, "Showing results for <b>sneaker &lt;i&gt;</b>; search instead for")
        self.assertContains(response, "<i>sneker &lt;i&gt;</i>")

    def test_api_fields(self):
        body = self.client.get(API, {"q": "ankel boot"}).json()
        self.assertEqual((body["query"], body["corrected_query"], body["match"]), ("ankel boot", "ankle boot", "words"))
        self.assertEqual(body["corrections"], [{"word": "ankel", "corrected": "ankle"}])
        self.assertEqual([r["id"] for r in body["results"]], [self.boot.pk, self.boot2.pk])  # title, then category
        plain = self.client.get(API, {"q": "boot"}).json()
        self.assertEqual((plain["corrected_query"], plain["corrections"]), (None, []))
        exact = self.client.get(API, {"q": "ankel boot", "exact": "1"}).json()
        self.assertEqual((exact["corrected_query"], exact["corrections"]), (None, []))

    def test_api_query_count_on_the_corrected_path(self):
        # EXISTS as typed (no row read: spelling.words_known), the vocabulary lookup, EXISTS corrected,
        # count, products, images
        with self.assertNumQueries(6):
            self.assertEqual(self.client.get(API, {"q": "sneker"}).json()["count"], 3)
        with self.assertNumQueries(4):  # words typed right: no correction queries at all
            self.client.get(API, {"q": "sneaker"})


class BadInputTests(TyposTestCase):
    def test_symbols_other_scripts_and_long_words_are_not_corrected(self):
        for q in (
            "!!! ### ???",
            "кроссовки",
            "運動鞋",
            "スニーカー",
            "sneaker" * 28,
            "a" * 200,
            "🙂🙂",
            "ñandú",
            "x y z",
        ):
            for params in ({"q": q}, {"q": q, "exact": "1"}):
                response = self.client.get(API, params)
                self.assertEqual(response.status_code, 200, q)
                self.assertIsNone(response.json()["corrected_query"], q)
            self.assertEqual(self.client.get(LIST, {"q": q}).status_code, 200, q)

    def test_ten_thousand_letters_are_refused_by_the_form_and_not_looked_up_by_the_selector(self):
        self.assertEqual(self.client.get(API, {"q": "a" * 10_000}).status_code, 400)  # at most 200 characters
        with self.assertNumQueries(0):
            self.assertIsNone(query_correct("a" * 10_000))
        self.assertIsNone(product_search(query="sneker" * 1_700).corrected_query)

    def test_a_near_miss_in_another_script_is_not_turned_into_an_english_word(self):
        self.assertIsNone(self.corrected("сникер"))  # Cyrillic: no stored word within reach

    def test_a_long_word_is_checked_against_a_capped_number_of_candidates(self):
        # 300 stored words as long as the typed one and sharing most of its trigrams.
        stem = "sneakerdressbootcoatsneaker"
        SearchWord.objects.bulk_create(
            [
                SearchWord(word=stem + "".join(chr(97 + (i // 26**k) % 26) for k in range(4)), stem=None, products=1)
                for i in range(300)
            ]
        )
        with mock.patch.object(spelling, "osa_distance", wraps=spelling.osa_distance) as distance:
            self.assertIsNone(query_correct(stem + "zzzz"))  # 31 letters, three edits from any of them
        self.assertGreater(distance.call_count, 0)
        self.assertLessEqual(distance.call_count, 2 * spelling.TRIGRAM_CANDIDATES)  # the word and its stem
        variants = len(one_edit_variants("x" * spelling.VARIANTS_UP_TO))
        self.assertLess(variants, 700)  # the most primary-key lookups a word costs

    def test_a_query_corrects_a_capped_number_of_words(self):
        query = " ".join(["sneker"] + [f"zq{'x' * i}w" for i in range(spelling.WORDS_CORRECTED_MAX + 4)])
        with mock.patch.object(spelling, "one_edit_variants", wraps=spelling.one_edit_variants) as variants:
            query_correct(query)
        self.assertLessEqual(variants.call_count, 2 * spelling.WORDS_CORRECTED_MAX)  # a word and its stem
