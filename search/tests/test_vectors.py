"""Ranking by L2 distance in pgvector: exact distances, one row per product, filters, HNSW vs exact."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from django.db import connection, transaction
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext

from search.fields import vector_text
from search.models import ImageEmbedding, ServingState
from search.queries.nearest import nearest_products
from search.queries.similar import SimilarItems, product_similar
from search.serving.hnsw import hnsw_index_build, hnsw_index_exists

from .factories import (
    category_create,
    model_version_create,
    product_create,
    product_with_vectors,
    products_bulk,
)


class VectorFieldTests(TestCase):
    def test_numpy_vectors_are_stored_and_read_back_exactly(self):
        version = model_version_create(dim=64, active=True)
        rng = np.random.default_rng(0)
        vector = (rng.standard_normal(64) * 10.0 ** rng.integers(-8, 8, 64)).astype(np.float32)
        vector[:3] = [0.0, np.float32(1e-38), -np.finfo(np.float32).max]
        product = product_with_vectors(model_version=version, vectors=[vector])
        stored = ImageEmbedding.objects.get(product=product).embedding
        np.testing.assert_array_equal(np.asarray(stored, np.float32), vector)
        self.assertEqual(vector_text(np.array([1.5, -2.0, 1e-7], np.float32)), "[1.5,-2,1.00000001e-07]")

    def test_a_vector_with_nan_is_refused_and_nothing_is_written(self):
        version = model_version_create(dim=2, active=True)
        with self.assertRaisesMessage(ValueError, "must not contain NaN"), transaction.atomic():
            product_with_vectors(model_version=version, vectors=[np.array([0.0, np.nan], np.float32)])
        self.assertFalse(ImageEmbedding.objects.filter(model_version=version).exists())


class DistanceTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=3, active=True)
        cls.query = product_with_vectors(model_version=cls.version, vectors=[[0, 0, 0]], title="query")
        cls.same = product_with_vectors(model_version=cls.version, vectors=[[0, 0, 0]], title="same")
        cls.near = product_with_vectors(model_version=cls.version, vectors=[[1, 0, 0]], title="near")
        cls.far = product_with_vectors(model_version=cls.version, vectors=[[1, 1, 1]], title="far")

    def test_distances_are_exact_l2_and_ordered(self):
        similar = product_similar(product=self.query, k=8)
        self.assertEqual(similar.state, SimilarItems.READY)
        self.assertEqual([i.product for i in similar.items], [self.same, self.near, self.far])
        for item, expected in zip(similar.items, [0.0, 1.0, math.sqrt(3)], strict=True):
            self.assertAlmostEqual(item.distance, expected, places=6)

    def test_excludes_the_product_itself(self):
        ids = [i.product.pk for i in product_similar(product=self.query, k=8).items]
        self.assertNotIn(self.query.pk, ids)

    def test_k_limits_the_rows(self):
        self.assertEqual([i.product for i in product_similar(product=self.query, k=2).items], [self.same, self.near])

    def test_product_with_several_images_appears_once_by_its_closest_image(self):
        multi = product_with_vectors(model_version=self.version, vectors=[[3, 0, 0], [0, 0.5, 0], [0, 0, 0.6]])
        items = product_similar(product=self.query, k=8).items
        self.assertEqual([i.product.pk for i in items].count(multi.pk), 1)
        item = next(i for i in items if i.product == multi)
        self.assertAlmostEqual(item.distance, 0.5, places=6)
        self.assertEqual(item.image.position, 1)  # the closest image is the one shown
        self.assertEqual(len(items), 4)

    def test_query_is_the_mean_of_a_products_photos(self):
        # Each photo alone is nearest to "query"/"same" ([0, 0, 0]); their mean [1, 0, 0] is "near".
        multi = product_with_vectors(model_version=self.version, vectors=[[0, 0, 2], [2, 0, -2]])
        self.assertEqual(product_similar(product=multi, k=1).items[0].product, self.near)

    def test_same_category_only(self):
        other = product_with_vectors(model_version=self.version, vectors=[[0, 0, 0.1]], category=self.query.category)
        items = product_similar(product=self.query, k=8, same_category=True).items
        self.assertEqual([i.product for i in items], [other])

    def test_item_has_image_url_and_product(self):
        item = product_similar(product=self.query, k=1).items[0]
        self.assertTrue(item.image_url.startswith("/media/products/"))

    def test_query_count_is_pinned(self):
        product = type(self.query).objects.browsable().get(pk=self.query.pk)
        with self.assertNumQueries(9):
            # active version, query vector, SET LOCAL, k-NN, products (+category), their images; inside
            # the test's transaction the k-NN's settings end with a savepoint (savepoint, rollback, release)
            similar = product_similar(product=product, k=3)
            for item in similar.items:
                item.image_url, item.product.category.name  # noqa: B018

    def test_no_active_model(self):
        ServingState.objects.update(is_active=False)
        self.assertEqual(product_similar(product=self.query).state, SimilarItems.NO_MODEL)

    def test_not_indexed_product_reports_progress_of_running_job(self):
        fresh = product_create()
        self.assertEqual(product_similar(product=fresh).state, SimilarItems.NOT_INDEXED)
        self.assertIsNone(product_similar(product=fresh).progress)
        from search.models import IndexJob

        IndexJob.objects.create(model_version=self.version, status=IndexJob.Status.RUNNING, total=60000, done=12000)
        similar = product_similar(product=fresh)
        self.assertEqual((similar.progress.done, similar.progress.total), (12000, 60000))

    def test_product_without_images(self):
        bare = product_create(images=[])
        self.assertEqual(product_similar(product=bare).state, SimilarItems.NO_IMAGES)


def _explain(sql_rows) -> str:
    return "\n".join(row[0] for row in sql_rows)


class HnswTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        rng = np.random.default_rng(7)
        cls.vectors = rng.normal(size=(240, 8)).astype(np.float32)
        cls.version = model_version_create(dim=8, active=True)
        cls.shoes, cls.bags = category_create("Shoes"), category_create("Bags")
        # 1 in 12 products is a bag, so a filtered HNSW scan needs the iterative scan to find k of them.
        cats = [cls.bags if i % 12 == 0 else cls.shoes for i in range(len(cls.vectors))]
        prices = [Decimal(5 + i % 50) for i in range(len(cls.vectors))]
        cls.products = products_bulk(model_version=cls.version, vectors=cls.vectors, categories=cats, prices=prices)
        # A second version of another dimension shares the table.
        cls.other = model_version_create(dim=5)
        products_bulk(model_version=cls.other, vectors=rng.normal(size=(20, 5)), categories=[cls.shoes])
        hnsw_index_build(model_version=cls.version)
        hnsw_index_build(model_version=cls.other)

    def setUp(self):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: make the planner show its index path

    def test_index_exists_per_version(self):
        self.assertTrue(hnsw_index_exists(model_version=self.version))
        self.assertTrue(hnsw_index_exists(model_version=self.other))

    def test_queries_use_the_versions_partial_hnsw_index(self):
        rows = (
            ImageEmbedding.objects.filter(model_version_id=self.version.pk)
            .annotate(distance=nearest_distance_expression(self.vectors[0]))
            .order_by("distance")[:5]
        )
        plan = rows.explain()
        self.assertIn(f"search_emb_hnsw_v{self.version.pk}", plan)

    def test_the_selectors_own_filtered_query_hits_the_index(self):
        with CaptureQueriesContext(connection) as queries:
            nearest_products(model_version_id=self.version.pk, vector=self.vectors[0], k=5, category_id=self.bags.pk)
        knn = next(q["sql"] for q in queries.captured_queries if "<->" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + knn)
            plan = _explain(cursor.fetchall())
        self.assertIn(f"search_emb_hnsw_v{self.version.pk}", plan)

    def test_exact_path_does_not_use_the_index(self):
        with CaptureQueriesContext(connection) as queries:
            nearest_products(model_version_id=self.version.pk, vector=self.vectors[0], k=5, exact=True)
        knn = next(q["sql"] for q in queries.captured_queries if "<->" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + knn)
            self.assertNotIn("hnsw", _explain(cursor.fetchall()))

    def test_exact_and_hnsw_agree_on_a_small_catalogue(self):
        for q in self.vectors[:10]:
            exact = nearest_products(model_version_id=self.version.pk, vector=q, k=10, exact=True)
            approx = nearest_products(model_version_id=self.version.pk, vector=q, k=10)
            self.assertEqual([n.product_id for n in approx], [n.product_id for n in exact])
            np.testing.assert_allclose([n.distance for n in approx], [n.distance for n in exact], rtol=1e-5)

    @override_settings(HNSW_EF_SEARCH=10)
    def test_filtered_queries_still_return_k_rows(self):
        for q in self.vectors[:5]:
            found = nearest_products(model_version_id=self.version.pk, vector=q, k=10, category_id=self.bags.pk)
            self.assertEqual(len(found), 10)
            exact = nearest_products(
                model_version_id=self.version.pk, vector=q, k=10, category_id=self.bags.pk, exact=True
            )
            self.assertEqual({n.product_id for n in found}, {n.product_id for n in exact})

    @override_settings(HNSW_EF_SEARCH=10)
    def test_price_range_filter_returns_k_rows_in_range(self):
        found = nearest_products(
            model_version_id=self.version.pk, vector=self.vectors[3], k=12, min_price=Decimal(10), max_price=Decimal(12)
        )
        self.assertEqual(len(found), 12)
        prices = dict(
            type(self.products[0]).objects.filter(pk__in=[n.product_id for n in found]).values_list("pk", "price")
        )
        self.assertTrue(all(Decimal(10) <= p <= Decimal(12) for p in prices.values()))

    def test_versions_of_different_dimensions_do_not_mix(self):
        found = nearest_products(model_version_id=self.other.pk, vector=[0] * 5, k=100)
        self.assertEqual(len(found), 20)


def nearest_distance_expression(vector):
    from django.db.models.functions import Cast
    from pgvector.django import L2Distance, VectorField

    return L2Distance(Cast("embedding", VectorField(dimensions=len(vector))), vector)
