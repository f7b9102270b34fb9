"""Hybrid search: a photo (or a vector) with words and a price range, filtered inside the vector query."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import TestCase
from django.urls import reverse

from catalog.keyword_search import Match, product_keyword_match
from catalog.models import Product
from search.queries.hybrid import keyword_neighbours
from search.queries.nearest import nearest_products
from search.serving.hnsw import hnsw_index_build

from .factories import (
    COLORS,
    SHAPES,
    category_create,
    index_and_activate,
    model_version_create,
    product_create,
    products_bulk,
    shape_png,
)
from .tiny_model import tiny_model_version


def upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("photo.png", data, content_type="image/png")


class KeywordNeighboursTests(TestCase):
    """200 products on a circle of hand-made vectors; every fifth is a "Red" one."""

    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=2)
        angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
        cls.vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
        prices = [Decimal(10 + i) for i in range(200)]
        cls.products = products_bulk(
            model_version=cls.version,
            vectors=cls.vectors.tolist(),
            categories=[category_create("Things")],
            prices=prices,
        )
        cls.red = [p.pk for i, p in enumerate(cls.products) if i % 5 == 0]
        Product.objects.filter(pk__in=cls.red).update(title="Red thing")
        hnsw_index_build(model_version=cls.version)

    def expected(self, query_vector, k: int, allowed: list[int]) -> list[int]:
        index = {p.pk: i for i, p in enumerate(self.products)}
        distances = {pk: float(np.linalg.norm(self.vectors[index[pk]] - query_vector)) for pk in allowed}
        return sorted(distances, key=lambda pk: (distances[pk], pk))[:k]

    def neighbours(self, *, exact_below: int, k: int = 10, **filters) -> list[int]:
        words = product_keyword_match(
            query="red", **{k_: v for k_, v in filters.items() if k_ in ("min_price", "max_price")}
        )
        found = keyword_neighbours(
            model_version_id=self.version.pk,
            vector=self.vectors[3],
            k=k,
            products=words.products,
            exact_below=exact_below,
            **filters,
        )
        return [n.product_id for n in found]

    def test_few_matches_are_ranked_exactly(self):
        self.assertEqual(self.neighbours(exact_below=2000), self.expected(self.vectors[3], 10, self.red))

    def test_many_matches_go_through_hnsw_and_still_return_k(self):
        self.assertEqual(self.neighbours(exact_below=5), self.expected(self.vectors[3], 10, self.red))

    def test_a_bounded_scan_that_comes_back_short_falls_back_to_exact(self):
        # 2,000 points on a circle; the matches ("far" ones) lie on the half away from the query, beyond
        # the first HNSW candidates: with a 3-row bound the iterative scan cannot reach them all, and
        # the answer must still be the exact top 10 (whichever plan Postgres picks for the bounded try).
        version = model_version_create(dim=2)
        angles = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
        vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
        products = products_bulk(
            model_version=version, vectors=vectors.tolist(), categories=[category_create("Circle")]
        )
        far = [p.pk for i, p in enumerate(products) if 800 <= i < 1200 and i % 10 == 0]
        Product.objects.filter(pk__in=far).update(title="Far thing")
        hnsw_index_build(model_version=version)
        with connection.cursor() as cursor:  # statistics for 2,000 rows, so the planner takes the HNSW index
            cursor.execute("ANALYZE search_imageembedding")
            cursor.execute("ANALYZE catalog_product")
        words = product_keyword_match(query="far")
        found = keyword_neighbours(
            model_version_id=version.pk, vector=vectors[0], k=10, products=words.products, exact_below=5, scan_tuples=3
        )
        distances = {
            pk: float(np.linalg.norm(vectors[i] - vectors[0]))
            for i, pk in enumerate(p.pk for p in products)
            if pk in far
        }
        self.assertEqual([n.product_id for n in found], sorted(distances, key=lambda pk: (distances[pk], pk))[:10])

    def test_price_range_applies_on_both_paths(self):
        allowed = [pk for i, pk in enumerate(p.pk for p in self.products) if i % 5 == 0 and 10 + i <= 100]
        for exact_below in (2000, 5):
            self.assertEqual(
                self.neighbours(exact_below=exact_below, max_price=Decimal(100)),
                self.expected(self.vectors[3], 10, allowed),
            )

    def test_the_many_matches_query_uses_the_hnsw_index(self):
        words = product_keyword_match(query="red")
        from django.db.models.functions import Cast
        from pgvector.django import L2Distance, VectorField

        from search.models import (
            ImageEmbedding,  # the same query nearest_products builds
        )

        rows = (
            ImageEmbedding.objects.filter(
                model_version_id=self.version.pk, product_id__in=words.products.order_by().values("pk")
            )
            .annotate(distance=L2Distance(Cast("embedding", VectorField(dimensions=2)), self.vectors[3]))
            .order_by("distance")[:20]
        )
        sql, params = rows.values_list("product_id", "distance").query.sql_with_params()
        with connection.cursor() as cursor:
            # The planner may rank a few matches exactly (a sort); with sorting off it must show that
            # the query's shape matches the version's partial HNSW index.
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        self.assertIn(f"search_emb_hnsw_v{self.version.pk}", plan)

    def test_words_matching_nothing_give_nothing(self):
        words = product_keyword_match(query="zzzqqq")
        self.assertEqual(
            keyword_neighbours(model_version_id=self.version.pk, vector=self.vectors[0], k=5, products=words.products),
            [],
        )

    def test_nearest_products_takes_ids(self):
        ids = self.red[:3]
        found = nearest_products(model_version_id=self.version.pk, vector=self.vectors[0], k=10, products=ids)
        self.assertEqual(sorted(n.product_id for n in found), sorted(ids))


class HybridPhotoSearchTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = tiny_model_version()
        cls.category = category_create("Shapes")
        cls.products = [
            product_create(
                images=[shape_png(s, color=c)],
                category=cls.category,
                title=f"{s.title()} {n}",
                price=Decimal(10 * (n + 1)),
            )
            for s in SHAPES
            for n, c in enumerate(COLORS)
        ]
        index_and_activate(cls.version)

    def test_page_with_words_keeps_only_matching_products(self):
        response = self.client.post(
            reverse("search:photo_search"), {"image": upload(shape_png("square")), "q": "circle", "k": 8}
        )
        self.assertEqual(response.status_code, 200)
        titles = [item.product.title for item in response.context["result"].items]
        self.assertEqual(sorted(titles), ["Circle 0", "Circle 1", "Circle 2", "Circle 3"])
        self.assertContains(response, "Most similar among “circle”")
        self.assertContains(response, 'name="q" value="circle"')  # in the header box too

    def test_api_with_words_and_prices(self):
        response = self.client.post(
            reverse("search:api_search"),
            {"image": upload(shape_png("bar")), "q": "square triangle", "min_price": "20", "max_price": "30"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            (response.json()["query"], response.json()["match"], response.json()["results"]),
            ("square triangle", "similar", []),
        )  # all words must match; no title is like both
        response = self.client.post(
            reverse("search:api_search"),
            {"image": upload(shape_png("bar")), "q": "triangle OR square", "min_price": "20", "max_price": "30"},
        )
        titles = sorted(r["title"] for r in response.json()["results"])
        self.assertEqual(titles, ["Square 1", "Square 2", "Triangle 1", "Triangle 2"])

    def test_price_range_alone(self):
        response = self.client.post(
            reverse("search:api_search"), {"image": upload(shape_png()), "max_price": "10", "k": 20}
        )
        self.assertEqual(
            sorted(r["title"] for r in response.json()["results"]), ["Bar 0", "Circle 0", "Square 0", "Triangle 0"]
        )

    def test_a_typo_in_the_words_is_corrected_to_the_catalogues_word(self):
        body = self.client.post(reverse("search:api_search"), {"image": upload(shape_png()), "q": "triangel"}).json()
        self.assertEqual(body["match"], Match.WORDS)  # "triangle" (catalog.spelling)
        self.assertTrue(body["results"])
        self.assertTrue(all(r["title"].startswith("Triangle") for r in body["results"]))

    def test_hostile_words_and_prices_are_400s(self):
        cases = [
            ({"q": "x" * 10_000}, "at most 200 characters"),
            ({"q": "a\x00b"}, "Null characters are not allowed"),
            ({"min_price": "-1"}, "greater than or equal to 0"),
            ({"max_price": "ten"}, "Enter a price as a number"),
            ({"min_price": "50", "max_price": "5"}, "above the max price"),
        ]
        for data, message in cases:
            api = self.client.post(reverse("search:api_search"), {"image": upload(shape_png()), **data})
            self.assertEqual(api.status_code, 400, data)
            self.assertIn(message, api.json()["error"])
            page = self.client.post(reverse("search:photo_search"), {"image": upload(shape_png()), **data})
            self.assertContains(page, message, status_code=400)

    def test_sql_and_html_in_the_words(self):
        response = self.client.post(
            reverse("search:photo_search"), {"image": upload(shape_png()), "q": "<b>x</b>' OR 1=1; --"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "<b>x</b>")
        self.assertEqual(Product.objects.count(), 16)

    def test_sort_by_photo_form_on_a_keyword_results_page_carries_the_filters(self):
        response = self.client.get(reverse("catalog:product_list"), {"q": "circle", "max_price": "30"})
        self.assertContains(response, "Sort these by similarity to a photo")
        for hidden in ('name="q" value="circle"', 'name="max_price" value="30"', 'name="k" value="48"'):
            self.assertContains(response, hidden)

    def test_query_count_with_words(self):
        # active version, category guess's category, EXISTS (words), ids of the matches, nearest
        # (set_config + select), products, images: as without words plus two; inside the test's
        # transaction the nearest query's settings end with a savepoint (savepoint, rollback, release)
        self.client.post(reverse("search:api_search"), {"image": upload(shape_png()), "q": "circle"})  # warm the model
        with self.assertNumQueries(11):
            self.client.post(reverse("search:api_search"), {"image": upload(shape_png()), "q": "circle"})
