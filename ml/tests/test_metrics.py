import unittest

import numpy as np

from ml.metrics import knn, pixel_baseline, ranked_metrics, retrieval_metrics


class KnnTests(unittest.TestCase):
    def test_exact_neighbours_and_distances(self):
        catalogue = np.array([[0.0], [1.0], [3.0], [10.0]])
        idx, dist = knn(catalogue, np.array([[2.9], [0.4]]), 2, chunk_size=1)
        np.testing.assert_array_equal(idx, [[2, 1], [0, 1]])
        np.testing.assert_allclose(dist, [[0.1, 1.9], [0.4, 0.6]], atol=1e-5)

    def test_ties_break_by_index_and_self_can_be_excluded(self):
        catalogue = np.array([[0.0], [1.0], [1.0], [5.0]])
        idx, _ = knn(catalogue, catalogue, 2, exclude_self=True)
        np.testing.assert_array_equal(idx[0], [1, 2])
        np.testing.assert_array_equal(idx[1], [2, 0])

    def test_bad_k_raises(self):
        with self.assertRaisesRegex(ValueError, "k=5"):
            knn(np.zeros((3, 2)), np.zeros((1, 2)), 5)


class MetricTests(unittest.TestCase):
    def test_hand_computed_precision_and_ap(self):
        # Query label 0; ranked labels: 0, 1, 0, 1 (k=4 here since the catalogue has 4 items).
        # P@1 = 1; hits at ranks 1 and 3: AP = (1/1 + 2/3) / 2 = 0.8333.
        m = ranked_metrics(np.array([[0, 1, 0, 1]]), np.array([0]), np.array([2]))
        self.assertEqual(m.precision_at_1, 1.0)
        self.assertAlmostEqual(m.map_at_100, (1 + 2 / 3) / 2)
        # Normalised by min(k, R) with R = 3 relevant in the catalogue: (1 + 2/3) / 3.
        m = ranked_metrics(np.array([[0, 1, 0, 1]]), np.array([0]), np.array([3]), ap_denominator="min_k_r")
        self.assertAlmostEqual(m.map_at_100, (1 + 2 / 3) / 3)

    def test_precision_at_10_on_a_toy_catalogue(self):
        # 20 points on a line, labels 0 for x < 10, 1 otherwise; query at 0 sees 10 label-0 items first.
        catalogue = np.arange(20, dtype=float)[:, None]
        labels = (np.arange(20) >= 10).astype(int)
        m = retrieval_metrics(catalogue, labels, np.array([[0.0], [14.2]]), np.array([0, 1]))
        self.assertEqual(m.precision_at_1, 1.0)
        # query 14.2: the 10 nearest are 10..19 (distances <= 5.8) before 9 (5.2)? 9 is at 5.2: included.
        # nearest 10 of 14.2: 14,15,13,16,12,17,11,18,10,19 -> distances up to 4.8, all label 1.
        self.assertEqual(m.precision_at_10, 1.0)
        self.assertEqual(m.n_queries, 2)

    def test_query_with_no_hits_has_zero_ap(self):
        m = ranked_metrics(np.array([[1, 1, 1]]), np.array([0]), np.array([0]))
        self.assertEqual(m.map_at_100, 0.0)
        self.assertEqual(m.precision_at_1, 0.0)

    def test_pixel_baseline_on_identical_images_is_perfect(self):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (12, 4, 4), dtype=np.uint8)
        labels = np.arange(12) % 3
        m = pixel_baseline(images, labels, images[:3], labels[:3])
        self.assertEqual(m.precision_at_1, 1.0)
