"""The admin's model dashboard: PCA map, version rows, and the page itself."""

from __future__ import annotations

import numpy as np
from django.contrib.auth import get_user_model
from django.test import TestCase
from django.urls import reverse

from search.admin.dashboard import (
    dashboard_versions,
    embedding_map,
    embedding_map_svg,
    pca_2d,
)
from search.tests.factories import (
    category_create,
    model_version_create,
    product_with_vectors,
)


class PcaTests(TestCase):
    def test_points_on_a_line_need_one_component(self):
        t = np.linspace(-1, 1, 20)
        vectors = np.stack([t, 2 * t, np.zeros_like(t)], axis=1)
        coords, (first, second) = pca_2d(vectors)
        self.assertAlmostEqual(first, 1.0, places=6)
        self.assertAlmostEqual(second, 0.0, places=6)
        np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t) * np.sqrt(5), atol=1e-6)

    def test_rejects_an_empty_matrix(self):
        with self.assertRaisesMessage(ValueError, "shape=(0, 3)"):
            pca_2d(np.zeros((0, 3)))


class DashboardTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(
            dim=3, active=True, loss_history=[{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]
        )
        cls.other = model_version_create(dim=3)
        shoes, bags = category_create("Shoes"), category_create("Bags")
        for i in range(6):
            product_with_vectors(model_version=cls.version, vectors=[[i, 0, 1]], category=shoes if i % 2 else bags)
        cls.staff = get_user_model().objects.create_superuser("boss", "", "a-long-test-password")

    def test_map_samples_at_most_the_limit_and_keeps_categories(self):
        emap = embedding_map(model_version=self.version, sample=4)
        self.assertEqual((emap.sampled, emap.total, len(emap.x)), (4, 6, 4))
        self.assertEqual({name for name, _, _ in emap.categories} <= {"Shoes", "Bags"}, True)
        self.assertEqual(embedding_map(model_version=self.version, sample=4).labels, emap.labels)  # fixed sample
        svg = embedding_map_svg(emap)
        self.assertIn("<svg", svg)
        self.assertEqual(svg.count("<circle"), 4 + len(emap.categories))

    def test_version_without_vectors_has_no_map(self):
        self.assertIsNone(embedding_map(model_version=self.other))

    def test_rows_have_coverage_in_a_fixed_number_of_queries(self):
        with self.assertNumQueries(5):
            rows = dashboard_versions()
        row = next(r for r in rows if r.version == self.version)
        self.assertEqual((row.embedded, row.total_images, row.coverage_fraction), (6, 6, 1.0))
        self.assertIn("2 → 1", row.loss_sparkline)

    def test_page_shows_versions_map_and_link_from_the_changelist(self):
        self.client.force_login(self.staff)
        changelist = self.client.get(reverse("admin:ml_modelversion_changelist"))
        url = reverse("admin:ml_modelversion_dashboard")
        self.assertContains(changelist, f'href="{url}"')
        response = self.client.get(url)
        self.assertContains(response, "Embedding map of")
        self.assertContains(response, 'class="lk-map"')
        self.assertContains(response, "6 of 6 images")
        self.assertEqual(self.client.get(url, {"version": self.other.pk}).status_code, 200)
        self.assertEqual(self.client.get(url, {"version": 999999}).status_code, 404)

    def test_a_running_version_polls_its_status_and_finished_ones_do_not(self):
        running = model_version_create(status="running", epochs=4, epoch=1)
        self.client.force_login(self.staff)
        response = self.client.get(reverse("admin:ml_modelversion_dashboard"))
        self.assertContains(
            response, f'data-lk-live data-status-url="{reverse("admin:ml_modelversion_status", args=[running.pk])}"'
        )
        self.assertContains(response, "data-lk-live", count=1)
        self.assertContains(response, "admin_lookalike/live.js")

    def test_page_needs_staff(self):
        response = self.client.get(reverse("admin:ml_modelversion_dashboard"))
        self.assertEqual(response.status_code, 302)
