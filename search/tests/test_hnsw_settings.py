"""The HNSW scan settings a query sets (iterative scan, ef_search, max_scan_tuples) end with that
query, also inside a caller's transaction: the caller's next queries run with its own settings."""

from __future__ import annotations

from django.db import connection, transaction
from django.test import TestCase

from search.queries.duplicates import duplicate_pairs
from search.queries.nearest import nearest_products

from .factories import model_version_create, product_with_vectors

SETTINGS = ("hnsw.iterative_scan", "hnsw.ef_search", "hnsw.max_scan_tuples")


def scan_settings() -> tuple[str | None, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join("current_setting(%s, true)" for _ in SETTINGS), SETTINGS)
        return cursor.fetchone()


class ScanSettingsTests(TestCase):
    """A TestCase runs each test in a transaction: every query here is inside an outer atomic block."""

    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=3, active=True)
        for vector in ([0, 0, 1], [0, 1, 0], [1, 0, 0]):
            product_with_vectors(model_version=cls.version, vectors=[vector])

    def setUp(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT '[1]'::vector")  # pgvector's library loaded: its settings exist
        self.before = scan_settings()
        self.assertEqual(self.before, ("off", "40", "20000"))  # pgvector's defaults

    def test_a_nearest_query_inside_a_transaction_leaves_the_settings_as_they_were(self):
        with transaction.atomic():
            found = nearest_products(model_version_id=self.version.pk, vector=[0, 0, 1], k=2, max_scan_tuples=200)
            self.assertEqual(len(found), 2)
            self.assertEqual(scan_settings(), self.before)
        self.assertEqual(scan_settings(), self.before)

    def test_the_callers_writes_before_the_query_stay(self):
        from catalog.models import Product

        Product.objects.update(title="renamed")
        nearest_products(model_version_id=self.version.pk, vector=[0, 0, 1], k=2, max_scan_tuples=200)
        self.assertEqual(set(Product.objects.values_list("title", flat=True)), {"renamed"})

    def test_a_duplicates_scan_inside_a_transaction_leaves_the_settings_as_they_were(self):
        duplicate_pairs(model_version=self.version, threshold=10.0)
        self.assertEqual(scan_settings(), self.before)
