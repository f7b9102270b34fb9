"""Triplet loss with in-batch mining (seed 004's triplet idea; mining as in FaceNet / Hermans et al.).

Triplets are not sampled offline: every batch holds P classes x K images (ml.input.balanced_order),
and each anchor is paired with positives (same label) and negatives (other labels) inside it.
"""

from __future__ import annotations

import keras
from keras import ops

from ml.hparams import MINING

_BIG = 1e9


def pairwise_distances(embeddings):
    """Euclidean distances [b, b]; the sqrt is guarded so gradients stay finite at zero."""
    sq = ops.sum(ops.square(embeddings), axis=1)
    d2 = ops.expand_dims(sq, 1) - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)) + ops.expand_dims(sq, 0)
    d2 = ops.maximum(d2, 0.0)
    zero = ops.cast(ops.equal(d2, 0.0), d2.dtype)
    return ops.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _masks(labels):
    labels = ops.reshape(labels, (-1,))
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    not_self = ops.logical_not(ops.eye(ops.shape(labels)[0], dtype="bool"))
    return ops.logical_and(same, not_self), ops.logical_not(same)


def mine_triplets(labels, distances, *, mining: str = "semi-hard"):
    """Indices (anchor, positive, negative) and a validity mask, all flat and the same length.

    hard: one triplet per anchor, its farthest positive and nearest negative.
    semi-hard: one triplet per (anchor, positive) pair, with the nearest negative farther than the
    positive; where none is, the farthest negative (it gives the smallest, safest loss).
    """
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}. Received: mining={mining!r}")
    pos, neg = _masks(labels)
    n = ops.shape(distances)[0]
    any_neg = ops.any(neg, axis=1)
    if mining == "hard":
        anchors = ops.arange(n)
        positives = ops.argmax(ops.where(pos, distances, -_BIG), axis=1)
        negatives = ops.argmin(ops.where(neg, distances, _BIG), axis=1)
        valid = ops.logical_and(ops.any(pos, axis=1), any_neg)
        return anchors, positives, negatives, valid
    d_ap = ops.expand_dims(distances, 2)  # [a, p, 1]
    d_an = ops.expand_dims(distances, 1)  # [a, 1, n]
    negmask = ops.expand_dims(neg, 1)
    semi = ops.logical_and(negmask, ops.greater(d_an, d_ap))
    semi_idx = ops.argmin(ops.where(semi, d_an, _BIG), axis=2)
    far_idx = ops.argmax(ops.where(negmask, d_an, -_BIG) + ops.zeros_like(d_ap), axis=2)
    negatives = ops.where(ops.any(semi, axis=2), semi_idx, far_idx)
    anchors = ops.repeat(ops.expand_dims(ops.arange(n), 1), n, axis=1)
    positives = ops.repeat(ops.expand_dims(ops.arange(n), 0), n, axis=0)
    valid = ops.logical_and(pos, ops.expand_dims(any_neg, 1))
    flat = lambda t: ops.reshape(t, (-1,))  # noqa: E731
    return flat(anchors), flat(positives), flat(negatives), flat(valid)


@keras.saving.register_keras_serializable(package="lookalike")
class TripletLoss(keras.losses.Loss):
    """mean(max(0, d(a, p) - d(a, n) + margin)) over the mined triplets of a batch.

    y_true: integer labels [b] or [b, 1]; y_pred: embeddings [b, dim] (L2-normalised upstream).
    """

    def __init__(self, margin: float = 0.2, mining: str = "semi-hard", name: str = "triplet_loss", **kwargs):
        if margin < 0:
            raise ValueError(f"margin must be >= 0. Received: margin={margin}")
        if mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}. Received: mining={mining!r}")
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.mining = mining

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        emb = ops.cast(y_pred, "float32")
        d = pairwise_distances(emb)
        a, p, n, valid = mine_triplets(labels, ops.stop_gradient(d), mining=self.mining)
        n_cols = ops.shape(d)[0]
        flat = ops.reshape(d, (-1,))
        d_ap = ops.take(flat, a * n_cols + p)
        d_an = ops.take(flat, a * n_cols + n)
        losses = ops.relu(d_ap - d_an + self.margin) * ops.cast(valid, "float32")
        count = ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)
        # One scalar per batch, repeated so Keras' per-sample reduction returns exactly it.
        return ops.ones_like(labels, dtype="float32") * (ops.sum(losses) / count)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining}
