"""Weighing a composed vector's parts per use: photo search and similar items rank by different
questions over the same stored vectors, and still report the plain L2 distance."""

from __future__ import annotations

import numpy as np
from django.db import connection
from django.test import SimpleTestCase, TestCase
from django.test.utils import CaptureQueriesContext

from catalog.images import read_image
from search.queries.nearest import nearest_products
from search.queries.photo import photo_search
from search.queries.similar import product_similar
from search.queries.weights import CANDIDATES, PHOTO, SIMILAR, query_vector

from .factories import (
    COLORS,
    category_create,
    index_and_activate,
    model_version_create,
    product_create,
    product_with_vectors,
    shape_png,
)
from .tiny_model import tiny_model_version

# A 4-d vector in three parts: instance (2), category (1), colour group (1).
PARTS = [
    {"name": "instance_embedding", "size": 2, "share": 0.4},
    {"name": "probabilities", "size": 1, "share": 0.3},
    {"name": "colours", "size": 1, "share": 0.3},
]


def unit(*values: float) -> list[float]:
    v = np.asarray(values, np.float64)
    return list(v / np.linalg.norm(v))


class QueryVectorTests(SimpleTestCase):
    def test_each_part_is_scaled_by_its_weight_for_the_use(self):
        # The weights written out (search.queries.weights): similar items weigh the instance part
        # 0.3, the category 2 and the colour groups 0; photo search the instance part 2, the
        # category 1 and the colour groups 0. A changed weight must change this test too.
        q = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
        np.testing.assert_allclose(query_vector(q, PARTS, SIMILAR), [0.3, 0.6, 6.0, 0.0], rtol=1e-6)
        np.testing.assert_allclose(query_vector(q, PARTS, PHOTO), [2.0, 4.0, 3.0, 0.0], rtol=1e-6)

    def test_nothing_to_weigh_gives_none(self):
        q = np.ones(4, np.float32)
        self.assertIsNone(query_vector(q, None, SIMILAR))  # a version from before parts were recorded
        self.assertIsNone(query_vector(q, [{"name": "instance_embedding", "size": 4, "share": 1.0}], SIMILAR))
        self.assertIsNone(query_vector(np.ones(5, np.float32), PARTS, SIMILAR))  # a layout that does not fit
        unknown = [{"name": "a", "size": 2, "share": 0.5}, {"name": "b", "size": 2, "share": 0.5}]
        self.assertIsNone(query_vector(q, unknown, PHOTO))  # parts it has no weights for keep 1

    def test_an_unknown_use_is_refused(self):
        with self.assertRaisesMessage(ValueError, "use must be one of"):
            query_vector(np.ones(4), PARTS, "browse")


class WeightedRankingTests(TestCase):
    """Stored vectors are unit length (as Compose makes them), so the weighted query re-weighs the
    parts' agreement: similar items favour the category part, photo search the instance part."""

    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=4, active=True, metrics={"vector_parts": PARTS})
        cls.query = product_with_vectors(model_version=cls.version, vectors=[unit(1, 0, 1, 0)], title="query")
        # Looks the same (instance part equal) but another category.
        cls.twin = product_with_vectors(model_version=cls.version, vectors=[unit(1, 0, 0, 1)], title="twin")
        # Same category, a different look.
        cls.kin = product_with_vectors(model_version=cls.version, vectors=[unit(-0.3, 1, 1, 0)], title="kin")

    def test_plain_order_and_distances_without_weights(self):
        q = np.asarray(unit(1, 0, 1, 0), np.float32)
        found = nearest_products(
            model_version_id=self.version.pk, vector=q, k=2, exclude_product_id=self.query.pk, exact=True
        )
        self.assertEqual([n.product_id for n in found], [self.twin.pk, self.kin.pk])

    def test_similar_items_put_the_same_category_first_and_report_plain_distances(self):
        items = product_similar(product=self.query, k=2).items
        self.assertEqual([i.product for i in items], [self.kin, self.twin])
        q = np.asarray(unit(1, 0, 1, 0))
        for item, stored in zip(items, [unit(-0.3, 1, 1, 0), unit(1, 0, 0, 1)], strict=True):
            self.assertAlmostEqual(item.distance, float(np.linalg.norm(q - np.asarray(stored))), places=5)

    def test_photo_ranking_weighs_the_instance_part(self):
        q = np.asarray(unit(1, 0, 1, 0), np.float32)
        weighted = query_vector(q, PARTS, PHOTO)
        found = nearest_products(
            model_version_id=self.version.pk,
            vector=q,
            k=2,
            exclude_product_id=self.query.pk,
            exact=True,
            rank_vector=weighted,
        )
        self.assertEqual([n.product_id for n in found], [self.twin.pk, self.kin.pk])
        self.assertAlmostEqual(found[0].distance, 1.0, places=5)  # |q - twin| for unit vectors with q . twin = 0.5


class WeightedPhotoSearchTests(TestCase):
    """The HNSW graph is built on the unweighted vectors: a weighted photo query walks it for more
    candidates (bench/weighted_recall.py measured recall@10 0.94 at 250k vectors without) and keeps k."""

    @classmethod
    def setUpTestData(cls):
        # The tiny model's 8-d vector read as two parts, so photo search weighs it.
        parts = [
            {"name": "instance_embedding", "size": 6, "share": 0.7},
            {"name": "probabilities", "size": 2, "share": 0.3},
        ]
        cls.version = tiny_model_version(metrics={"vector_parts": parts})
        category = category_create("Square")
        for c, color in enumerate(COLORS):
            product_create(category=category, images=[shape_png("square", color=color)], title=f"square {c}")
        index_and_activate(cls.version)

    def test_a_weighted_photo_query_walks_a_wider_candidate_list_and_keeps_k(self):
        with CaptureQueriesContext(connection) as captured:
            result = photo_search(image=read_image(shape_png("square", color=COLORS[0])), k=2)
        self.assertEqual(len(result.items), 2)
        self.assertEqual(result.items[0].product.title, "square 0")
        ef = [q["sql"] for q in captured.captured_queries if "ef_search" in q["sql"]]
        self.assertTrue(ef and all(str(2 * CANDIDATES[PHOTO]) in sql for sql in ef), ef)


class AdminLayoutTests(TestCase):
    def test_the_version_page_says_how_each_use_weighs_the_parts(self):
        from django.contrib.auth import get_user_model
        from django.urls import reverse

        self.client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
        version = model_version_create(dim=4, metrics={"vector_parts": PARTS})
        page = self.client.get(reverse("admin:ml_modelversion_change", args=[version.pk]))
        self.assertContains(page, "category: 1 dims, share 0.30 · photo search ×1.0 · similar items ×2.0")
        self.assertContains(page, "colour group: 1 dims, share 0.30 · photo search ×0.0 · similar items ×0.0")
        plain = model_version_create(dim=4)
        self.assertContains(
            self.client.get(reverse("admin:ml_modelversion_change", args=[plain.pk])),
            "One part: every dimension counts the same",
        )

    def test_the_version_page_shows_the_localisers_figures_or_why_there_is_none(self):
        from django.contrib.auth import get_user_model
        from django.urls import reverse

        self.client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
        figures = {"share_iou_0_7": 0.685, "box_iou_mean": 0.7251, "eval_composites": 200, "train_cutouts": 493}
        trained = model_version_create(
            dim=4, metrics={"localiser": {**figures, "steps": 3000, "seconds": {"total": 95.4}}}
        )
        self.assertContains(
            self.client.get(reverse("admin:ml_modelversion_change", args=[trained.pk])),
            "Box IoU ≥ 0.7 on 68% of 200 held-out composites (mean IoU 0.73); learned from 493 cut-outs in 3000 steps, 95 s.",
        )
        skipped = model_version_create(
            dim=4, metrics={"localiser": None, "localiser_skipped": "only 3 of 3 catalogue photos show an item"}
        )
        self.assertContains(
            self.client.get(reverse("admin:ml_modelversion_change", args=[skipped.pk])),
            "None (only 3 of 3 catalogue photos show an item): photo search finds items against",
        )
