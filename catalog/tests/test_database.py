import numpy as np
from django.db import connection
from django.test import TestCase
from pgvector.django import VectorField


class VectorExtensionTests(TestCase):
    def test_first_migration_creates_the_vector_extension(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        self.assertIsNotNone(row, "the vector extension is not installed")
        major, minor = (int(part) for part in row[0].split(".")[:2])
        self.assertGreaterEqual((major, minor), (0, 8), "iterative index scans need pgvector 0.8")

    def test_a_vector_column_round_trips(self):
        field = VectorField(dimensions=3)
        value = np.array([0.5, -1.25, 3.0], dtype=np.float32)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE roundtrip (v vector(3))")
            cursor.execute("INSERT INTO roundtrip (v) VALUES (%s)", [field.get_db_prep_value(value, connection)])
            cursor.execute("SELECT v, v <-> '[0.5, -1.25, 4.0]' FROM roundtrip")
            stored, distance = cursor.fetchone()
        np.testing.assert_array_equal(field.from_db_value(stored, None, connection), value)
        self.assertAlmostEqual(distance, 1.0)
