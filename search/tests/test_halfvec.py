"""halfvec storage: where a version's vectors go, the cast every reader uses so the
version's HNSW index serves it, refusals, and the migration that keeps float32 vectors where they are."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext

from catalog.models import Product
from search.admin.dashboard import embedding_map
from search.indexing.writes import embeddings_write
from search.models import ImageEmbedding, ServingState
from search.queries.duplicates import _NEAREST_OTHER_PRODUCTS, duplicate_pairs
from search.queries.hybrid import keyword_neighbours
from search.queries.nearest import nearest_products
from search.queries.similar import product_similar
from search.serving.activation import (
    model_version_storage_set,
    model_version_train_start,
    version_storage_ensure,
)
from search.serving.hnsw import hnsw_index_build
from search.serving.versions import version_storage
from search.storage import HALFVEC, VECTOR, storage_named

from .factories import (
    category_create,
    model_version_create,
    product_with_vectors,
    products_bulk,
)


def halfvec_version(*, dim: int, active: bool = False):
    version = model_version_create(dim=dim, active=active)
    model_version_storage_set(model_version=version, storage="halfvec")
    return version


def plan_of(sql: str, params=None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def knn_sql(call) -> str:
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries if "<->" in q["sql"]][-1]


class StorageChoiceTests(TestCase):
    def test_a_new_training_run_stores_as_the_setting_says(self):
        for storage in ("halfvec", "vector"):
            with override_settings(VECTOR_STORAGE=storage):
                version = model_version_train_start(architecture="classifier", enqueue=False)
            self.assertEqual(version_storage(model_version=version).name, storage)
        version = model_version_train_start(architecture="classifier", enqueue=False, storage="vector")
        self.assertIs(version_storage(model_version=version), VECTOR)

    def test_an_unknown_storage_is_refused_before_anything_is_recorded(self):
        before = ServingState.objects.count()
        with self.assertRaisesMessage(ValueError, "Vector storage must be one of vector, halfvec. Received: 'float8'"):
            model_version_train_start(architecture="classifier", enqueue=False, storage="float8")
        self.assertEqual(ServingState.objects.count(), before)
        with self.assertRaises(ValueError):
            storage_named(None)

    def test_storage_cannot_change_once_the_version_has_vectors(self):
        version = halfvec_version(dim=2)
        product_with_vectors(model_version=version, vectors=[[0.5, 0.25]])
        with self.assertRaisesMessage(ValueError, "already stores its vectors as halfvec"):
            model_version_storage_set(model_version=version, storage="vector")
        self.assertIs(version_storage(model_version=version), HALFVEC)

    def test_a_version_with_float32_vectors_and_no_serving_state_stays_vector(self):
        legacy = model_version_create(dim=2)  # no serving state: written before halfvec
        product_with_vectors(model_version=legacy, vectors=[[1.0, 0.0]])
        ServingState.objects.filter(model_version=legacy).delete()
        with override_settings(VECTOR_STORAGE="halfvec"):
            self.assertIs(version_storage_ensure(model_version=legacy), VECTOR)
            fresh = model_version_create(dim=2)
            ServingState.objects.filter(model_version=fresh).delete()
            self.assertIs(version_storage_ensure(model_version=fresh), HALFVEC)


class HalfvecRowsTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = halfvec_version(dim=3, active=True)
        cls.query = product_with_vectors(model_version=cls.version, vectors=[[0, 0, 0]], title="query")
        cls.near = product_with_vectors(model_version=cls.version, vectors=[[1, 0, 0]], title="near")
        cls.far = product_with_vectors(model_version=cls.version, vectors=[[1, 1, 1]], title="far")

    def test_vectors_go_to_the_halfvec_column_only(self):
        rows = ImageEmbedding.objects.filter(model_version=self.version)
        self.assertEqual(rows.filter(embedding__isnull=True, embedding_half__isnull=False).count(), 3)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT pg_typeof(embedding_half)::text FROM search_imageembedding WHERE model_version_id = %s",
                [self.version.pk],
            )
            self.assertEqual(cursor.fetchall(), [("halfvec",)])

    def test_the_write_path_writes_halfvec_and_rounds_to_float16(self):
        image = self.near.images.get()
        value = np.array([0.1, 1 / 3, 2.0], np.float32)
        embeddings_write(model_version=self.version, vectors={image.pk: value}, failures={})
        row = ImageEmbedding.objects.get(image=image, model_version=self.version)
        self.assertIsNone(row.embedding)
        np.testing.assert_array_equal(row.vector, value.astype(np.float16).astype(np.float32))

    def test_similar_items_have_exact_l2_distances(self):
        similar = product_similar(product=self.query, k=8)
        self.assertEqual([i.product for i in similar.items], [self.near, self.far])
        for item, expected in zip(similar.items, [1.0, math.sqrt(3)], strict=True):
            self.assertAlmostEqual(item.distance, expected, places=3)

    def test_similar_items_take_as_many_queries_as_with_vector(self):
        product = Product.objects.browsable().get(pk=self.query.pk)
        # as test_vectors pins for float32 vectors (the k-NN's savepoint inside the test's transaction too)
        with self.assertNumQueries(9):
            similar = product_similar(product=product, k=2)
            for item in similar.items:
                item.image_url, item.product.category.name  # noqa: B018

    def test_a_value_beyond_float16_is_refused_and_nothing_is_written(self):
        before = ImageEmbedding.objects.count()
        with self.assertRaisesMessage(ValueError, "halfvec vector must stay within ±65504"), transaction.atomic():
            product_with_vectors(model_version=self.version, vectors=[np.array([0.0, 1e6, 0.0], np.float32)])
        with self.assertRaisesMessage(ValueError, "must not contain NaN"), transaction.atomic():
            product_with_vectors(model_version=self.version, vectors=[np.array([0.0, np.inf, 0.0], np.float32)])
        self.assertEqual(ImageEmbedding.objects.count(), before)

    def test_a_row_with_both_columns_or_neither_is_refused_by_the_database(self):
        from django.db import IntegrityError

        image = self.near.images.get()
        for values in (
            {"embedding": [1, 0, 0], "embedding_half": [1, 0, 0]},
            {"embedding": None, "embedding_half": None},
        ):
            with self.assertRaises(IntegrityError), transaction.atomic():
                ImageEmbedding.objects.filter(image=image, model_version=self.version).update(**values)

    def test_the_dashboard_map_reads_halfvec(self):
        emap = embedding_map(model_version=self.version)
        self.assertEqual(emap.sampled, 3)


class HalfvecIndexTests(TestCase):
    """Every reader casts as the version's index does, so EXPLAIN shows the HNSW index."""

    @classmethod
    def setUpTestData(cls):
        rng = np.random.default_rng(3)
        cls.vectors = rng.normal(size=(120, 8)).astype(np.float32)
        cls.version = halfvec_version(dim=8, active=True)
        cls.shoes, cls.bags = category_create("Shoes"), category_create("Bags")
        cats = [cls.bags if i % 12 == 0 else cls.shoes for i in range(len(cls.vectors))]
        cls.products = products_bulk(
            model_version=cls.version,
            vectors=cls.vectors,
            categories=cats,
            prices=[Decimal(5 + i % 50) for i in range(len(cls.vectors))],
        )
        cls.float32 = model_version_create(dim=8)  # the same vectors as float32, beside it in the table
        products_bulk(model_version=cls.float32, vectors=cls.vectors, categories=[cls.shoes])
        hnsw_index_build(model_version=cls.version)
        hnsw_index_build(model_version=cls.float32)

    def setUp(self):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: make the planner show its index path

    def index(self) -> str:
        return f"search_emb_hnsw_v{self.version.pk}"

    def test_the_index_is_on_the_halfvec_column_with_halfvec_l2_ops(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [self.index()])
            definition = cursor.fetchone()[0]
        self.assertIn("(embedding_half)::halfvec(8)) halfvec_l2_ops", definition)
        self.assertIn(f"WHERE (model_version_id = {self.version.pk})", definition)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"search_emb_hnsw_v{self.float32.pk}"]
            )
            self.assertIn("(embedding)::vector(8)) vector_l2_ops", cursor.fetchone()[0])

    def test_similar_items_use_the_index(self):
        sql = knn_sql(lambda: product_similar(product=self.products[0], k=5))
        self.assertIn("::halfvec(8)", sql)
        self.assertIn(self.index(), plan_of(sql))

    def test_a_category_filtered_query_uses_the_index_and_returns_k(self):
        sql = knn_sql(
            lambda: nearest_products(
                model_version_id=self.version.pk, vector=self.vectors[0], k=5, category_id=self.bags.pk
            )
        )
        self.assertIn(self.index(), plan_of(sql))
        with override_settings(HNSW_EF_SEARCH=10):
            found = nearest_products(
                model_version_id=self.version.pk, vector=self.vectors[1], k=10, category_id=self.bags.pk
            )
        self.assertEqual(len(found), 10)

    def test_photo_and_words_use_the_index(self):
        # More matches than exact_below: the HNSW query with the words as a subquery filter.
        words = Product.objects.filter(pk__in=[p.pk for p in self.products])
        sql = knn_sql(
            lambda: keyword_neighbours(
                model_version_id=self.version.pk,
                vector=self.vectors[0],
                k=5,
                products=words,
                exact_below=10,
                storage=HALFVEC,
            )
        )
        self.assertIn(self.index(), plan_of(sql))

    def test_near_duplicate_probes_use_the_index(self):
        storage = version_storage(model_version=self.version)
        sql = _NEAREST_OTHER_PRODUCTS.format(
            a=storage.sql(8, alias="a"), b=storage.sql(8, alias="b"), version=self.version.pk, limit=5
        )
        self.assertIn(self.index(), plan_of(sql, [[1, 2, 3]]))
        self.assertEqual(duplicate_pairs(model_version=self.version, threshold=0.0), [])

    def test_the_exact_scan_reads_the_halfvec_column_without_the_index(self):
        sql = knn_sql(
            lambda: nearest_products(model_version_id=self.version.pk, vector=self.vectors[0], k=5, exact=True)
        )
        self.assertIn('"embedding_half" <->', sql)
        self.assertNotIn("hnsw", plan_of(sql))

    def test_halfvec_finds_what_an_exact_float32_scan_finds(self):
        for q in self.vectors[:10]:
            exact32 = nearest_products(model_version_id=self.float32.pk, vector=q, k=10, exact=True)
            half = nearest_products(model_version_id=self.version.pk, vector=q, k=10)
            self.assertEqual(len({n.image_id for n in half}), 10)
            np.testing.assert_allclose([n.distance for n in half], [n.distance for n in exact32], rtol=2e-3)


class HalfvecMigrationTests(TransactionTestCase):
    def before(self):
        """Every app at its latest migration but search, just before halfvec."""
        leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
        return [("search", "0006_near_duplicate_proxy") if app == "search" else (app, name) for app, name in leaves]

    def migrate(self, targets):
        MigrationExecutor(connection).migrate(targets)
        return MigrationExecutor(connection).loader.project_state(targets).apps

    def tearDown(self):
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    def test_float32_vectors_stay_where_they_are_and_read_as_vector(self):
        apps = self.migrate(self.before())
        ModelVersion = apps.get_model("ml", "ModelVersion")
        Category, Product, ProductImage = (
            apps.get_model("catalog", m) for m in ("Category", "Product", "ProductImage")
        )
        version = ModelVersion.objects.create(architecture="classifier", status="succeeded", dim=2)
        apps.get_model("search", "ServingState").objects.create(model_version=version, is_active=True)
        category = Category.objects.create(name="Old", slug="old")
        product = Product.objects.create(sku="OLD-1", title="Old", category=category)
        image = ProductImage.objects.create(
            product=product, image="products/old.png", width=16, height=16, sha256="0" * 64
        )
        apps.get_model("search", "ImageEmbedding").objects.create(
            image=image, model_version=version, product=product, category=category, embedding=[0.25, -1.5]
        )

        self.migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        row = ImageEmbedding.objects.get(image_id=image.pk)
        self.assertIsNone(row.embedding_half)
        np.testing.assert_array_equal(row.vector, [0.25, -1.5])
        self.assertIs(version_storage(model_version=version.pk), VECTOR)
        self.assertEqual(
            [n.image_id for n in nearest_products(model_version_id=version.pk, vector=[0.25, -1.5], k=1)], [image.pk]
        )


class HnswBuildMemoryTests(TestCase):
    def test_a_graph_that_outgrows_maintenance_work_mem_is_logged_with_what_to_set(self):
        version = halfvec_version(dim=2)
        rng = np.random.default_rng(1)
        products_bulk(
            model_version=version,
            vectors=rng.normal(size=(4000, 2)).astype(np.float32),
            categories=[category_create("Many")],
        )
        with override_settings(HNSW_BUILD_MEMORY="1MB"), self.assertLogs("search.serving.hnsw", "WARNING") as logs:
            hnsw_index_build(model_version=version)
        self.assertIn("Raise HNSW_BUILD_MEMORY (now 1MB)", logs.output[0])
        self.assertIn("no longer fits into maintenance_work_mem", logs.output[0])


class AdminStorageTests(TestCase):
    def test_the_version_page_says_how_its_vectors_are_stored(self):
        from django.contrib.auth import get_user_model
        from django.urls import reverse

        admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        self.client.force_login(admin)
        version = halfvec_version(dim=2)
        page = self.client.get(reverse("admin:ml_modelversion_change", args=[version.pk]))
        self.assertContains(page, "halfvec (float16)")
        model_version_storage_set(model_version=version, storage="vector")
        self.assertContains(
            self.client.get(reverse("admin:ml_modelversion_change", args=[version.pk])), "vector (float32)"
        )
