import unittest

import numpy as np
from keras import ops

from ml.losses import TripletLoss, mine_triplets, pairwise_distances


class MiningTests(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
        emb = rng.normal(size=(8, 4)).astype("float32")
        self.emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        self.d = np.asarray(pairwise_distances(ops.convert_to_tensor(self.emb)))

    def test_pairwise_distances_match_numpy(self):
        expected = np.linalg.norm(self.emb[:, None] - self.emb[None], axis=-1)
        np.testing.assert_allclose(self.d, expected, atol=1e-5)

    def test_positives_share_label_and_negatives_do_not(self):
        for mining in ("hard", "semi-hard"):
            with self.subTest(mining=mining):
                a, p, n, valid = (np.asarray(t) for t in mine_triplets(self.labels, self.d, mining=mining))
                a, p, n = a[valid], p[valid], n[valid]
                self.assertGreater(len(a), 0)
                self.assertTrue((self.labels[a] == self.labels[p]).all())
                self.assertTrue((a != p).all())
                self.assertTrue((self.labels[a] != self.labels[n]).all())

    def test_hard_mining_picks_farthest_positive_and_nearest_negative(self):
        a, p, n, _ = (np.asarray(t) for t in mine_triplets(self.labels, self.d, mining="hard"))
        for i in range(8):
            pos = [j for j in range(8) if self.labels[j] == self.labels[i] and j != i]
            neg = [j for j in range(8) if self.labels[j] != self.labels[i]]
            self.assertEqual(p[i], pos[int(np.argmax(self.d[i, pos]))])
            self.assertEqual(n[i], neg[int(np.argmin(self.d[i, neg]))])

    def test_semi_hard_negative_is_farther_than_positive_when_one_exists(self):
        a, p, n, valid = (np.asarray(t) for t in mine_triplets(self.labels, self.d, mining="semi-hard"))
        for i, j, k in zip(a[valid], p[valid], n[valid]):
            farther = [m for m in range(8) if self.labels[m] != self.labels[i] and self.d[i, m] > self.d[i, j]]
            if farther:
                self.assertEqual(k, min(farther, key=lambda m: self.d[i, m]))

    def test_unknown_mining_raises(self):
        with self.assertRaisesRegex(ValueError, "mining='easy'"):
            mine_triplets(self.labels, self.d, mining="easy")


class TripletLossTests(unittest.TestCase):
    def test_separated_classes_give_zero_loss(self):
        emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32")
        loss = TripletLoss(margin=0.2, mining="hard")(np.array([0, 0, 1, 1]), emb)
        self.assertAlmostEqual(float(loss), 0.0, places=5)

    def test_hand_computed_hard_loss(self):
        # On a line: d(a, p) = 2, d(a, n) = 1 for anchors 0 and 1... each anchor's hardest triplet.
        emb = np.array([[0.0], [2.0], [1.0], [3.5]], "float32")
        labels = np.array([0, 0, 1, 1])
        # anchor 0: p=1 (2), n=2 (1) -> 2-1+0.5=1.5; anchor 1: p=0 (2), n=2 (1) -> 1.5
        # anchor 2: p=3 (2.5), n=1 (1) -> 2.0; anchor 3: p=2 (2.5), n=1 (1.5) -> 1.5
        loss = TripletLoss(margin=0.5, mining="hard")(labels, emb)
        self.assertAlmostEqual(float(loss), (1.5 + 1.5 + 2.0 + 1.5) / 4, places=5)

    def test_config_round_trip(self):
        loss = TripletLoss(margin=0.3, mining="hard")
        clone = TripletLoss.from_config(loss.get_config())
        self.assertEqual((clone.margin, clone.mining), (0.3, "hard"))
