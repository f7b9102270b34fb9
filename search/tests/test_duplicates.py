"""Near-duplicates: pairs of different products within a distance, through the HNSW index, with a
default threshold from the model's own distances; the command and the admin page."""

from __future__ import annotations

import io

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import TestCase
from django.urls import reverse

from search.queries.duplicates import (
    _NEAREST_OTHER_PRODUCTS,
    duplicate_pairs,
    duplicate_threshold_default,
)
from search.serving.hnsw import hnsw_index_build
from search.serving.versions import version_storage

from .factories import model_version_create, product_with_vectors, serving_set

PAGE = reverse("admin:search_nearduplicate_changelist")


class DuplicatesTestCase(TestCase):
    """Ten products one apart on a line, a near-copy of the sixth (0.02 away), and a product whose
    two images are close to each other (the same product: never a pair)."""

    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=2, active=True)
        cls.line = [
            product_with_vectors(model_version=cls.version, vectors=[[float(i), 0.0]], title=f"Point {i}")
            for i in range(10)
        ]
        cls.copy = product_with_vectors(model_version=cls.version, vectors=[[5.02, 0.0]], title="Point 5 again")
        cls.two_views = product_with_vectors(
            model_version=cls.version, vectors=[[20.0, 0.0], [20.01, 0.0]], title="Two views"
        )
        hnsw_index_build(model_version=cls.version)

    def setUp(self):
        cache.clear()


class DuplicatePairsTests(DuplicatesTestCase):
    def test_default_threshold_is_a_quarter_of_the_median_nearest_other_product_distance(self):
        # Nearest other product: 1.0 for the line's points, 0.02 for the pair, 10-ish for Two views.
        self.assertAlmostEqual(duplicate_threshold_default(model_version=self.version), 0.25, places=5)

    def test_finds_the_near_copy_once_and_not_the_same_products_images(self):
        pairs = duplicate_pairs(model_version=self.version, threshold=0.25)
        self.assertEqual(len(pairs), 1)
        pair = pairs[0]
        self.assertEqual({pair.product_a, pair.product_b}, {self.line[5].pk, self.copy.pk})
        self.assertAlmostEqual(pair.distance, 0.02, places=5)

    def test_threshold_widens_and_pairs_are_closest_first(self):
        pairs = duplicate_pairs(model_version=self.version, threshold=1.0)
        self.assertEqual(len(pairs), 11)  # 9 neighbours on the line, and the copy with 5 (0.02) and 6 (0.98)
        self.assertEqual([round(p.distance, 2) for p in pairs[:2]], [0.02, 0.98])
        self.assertEqual(duplicate_pairs(model_version=self.version, threshold=0.0), [])

    def test_progress_is_reported(self):
        seen = []
        duplicate_pairs(
            model_version=self.version, threshold=0.1, progress=lambda done, total: seen.append((done, total))
        )
        self.assertEqual(seen[-1], (13, 13))

    def test_each_probe_uses_the_hnsw_index(self):
        storage = version_storage(model_version=self.version)
        sql = _NEAREST_OTHER_PRODUCTS.format(
            a=storage.sql(2, alias="a"), b=storage.sql(2, alias="b"), version=self.version.pk, limit=5
        )
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, [[1, 2, 3]])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        self.assertIn(f"search_emb_hnsw_v{self.version.pk}", plan)


class FindDuplicatesCommandTests(DuplicatesTestCase):
    def run_command(self, *args):
        out, err = io.StringIO(), io.StringIO()
        call_command("find_duplicates", *args, stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    def test_default_threshold(self):
        out, err = self.run_command()
        self.assertIn("Threshold 0.2500", err)
        self.assertIn("1 pairs within 0.2500", err)
        [line] = out.splitlines()
        self.assertTrue(line.startswith("0.0200  #"), line)
        self.assertIn("“Point 5”", line)
        self.assertIn("“Point 5 again”", line)

    def test_explicit_threshold_and_limit(self):
        out, err = self.run_command("--threshold", "1", "--limit", "3")
        self.assertEqual(len(out.splitlines()), 3)
        self.assertIn("11 pairs within 1.0000", err)

    def test_refusals(self):
        with self.assertRaisesMessage(CommandError, "The threshold must be a distance of 0 or more. Received: -1.0"):
            self.run_command("--threshold", "-1")
        with self.assertRaisesMessage(CommandError, "There is no model version #999999."):
            self.run_command("--model-version", "999999")
        serving_set(self.version, is_active=False)
        with self.assertRaisesMessage(CommandError, "No model version is active"):
            self.run_command()


class NearDuplicateAdminTests(DuplicatesTestCase):
    def login(self, *, superuser=True):
        User = get_user_model()
        if superuser:
            user = User.objects.create_superuser("dup-admin", "d@example.com", "pw")
        else:
            user = User.objects.create_user("dup-staff", "s@example.com", "pw", is_staff=True)
        self.client.force_login(user)
        return user

    def test_lists_pairs_with_thumbnails_distance_and_edit_links(self):
        self.login()
        response = self.client.get(PAGE)
        self.assertContains(response, "1 pair within 0.2500")
        self.assertContains(response, "0.0200")
        for product in (self.line[5], self.copy):
            self.assertContains(response, reverse("admin:catalog_product_change", args=[product.pk]))
            self.assertContains(response, product.images.get().image.url)
        self.assertContains(response, "0.25 × the median distance")
        self.assertContains(self.client.get(PAGE, {"threshold": "1"}), "11 pairs within 1.0000")

    def test_bad_threshold_is_a_400_with_the_message(self):
        self.login()
        for raw, message in (
            ("abc", "must be a number"),
            ("-1", "0 or more"),
            ("nan", "0 or more"),
            ("inf", "0 or more"),
        ):
            self.assertContains(self.client.get(PAGE, {"threshold": raw}), message, status_code=400)

    def test_no_active_model(self):
        self.login()
        serving_set(self.version, is_active=False)
        self.assertContains(self.client.get(PAGE), "No model is active")

    def test_needs_permission_to_view_products(self):
        user = self.login(superuser=False)
        self.assertEqual(self.client.get(PAGE).status_code, 403)
        user.user_permissions.add(Permission.objects.get(codename="view_product", content_type__app_label="catalog"))
        self.assertEqual(self.client.get(PAGE).status_code, 200)

    def test_query_count(self):
        self.login()
        self.client.get(reverse("admin:index"))  # session and user loads settle
        cache.clear()
        # session, user, active version, vector stamp, ids + probe for the default threshold (2 + set_config),
        # ids + probe for the pairs, products, images; inside the test's transaction each probe's settings
        # end with a savepoint (savepoint, rollback, release: 2 x 3)
        with self.assertNumQueries(18):
            self.client.get(PAGE)
        with self.assertNumQueries(6):  # cached pairs: session, user, active version, stamp, products, images
            self.client.get(PAGE)
