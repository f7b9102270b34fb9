"""Colour as a training signal the images give themselves.

A catalogue rarely has a colour column, but its photos show colour: the histogram of each framed
item's pixels (ml.framing's mask keeps the background out), clustered into a few dozen colour
groups, gives every product a colour label (the most common among its photos) that training can
learn like the category. Deterministic for a seed; NumPy only.
"""

from __future__ import annotations

import numpy as np

BINS = 4  # per channel: 64 colour cells
DEFAULT_GROUPS = 24


def colour_histograms(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """float32 [n, 64]: the square root of each item's colour histogram (Hellinger space).
    images uint8 [n, s, s, 3]; masks uint8 [n, s, s] (255 = item)."""
    n = len(images)
    out = np.zeros((n, BINS ** 3), np.float32)
    for start in range(0, n, 1024):  # in chunks: a whole catalogue's pixels would not fit in memory
        chunk = slice(start, start + 1024)
        cells = (np.asarray(images[chunk]).reshape(-1, images.shape[1] * images.shape[2], 3).astype(np.int32)
                 * BINS) // 256
        index = (cells[..., 0] * BINS + cells[..., 1]) * BINS + cells[..., 2]
        weight = (np.asarray(masks[chunk]).reshape(len(index), -1) > 127).astype(np.float32) + 1e-3
        for i in range(len(index)):  # an empty mask counts the whole image
            out[start + i] = np.bincount(index[i], weights=weight[i], minlength=BINS ** 3)
    return np.sqrt(out / out.sum(axis=1, keepdims=True))


def colour_groups(histograms: np.ndarray, groups: int, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """k-means (k-means++ start) of the histograms: int64 [n] group per row."""
    rng = np.random.default_rng(seed)
    n = len(histograms)
    k = max(1, min(groups, n))
    centres = [histograms[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min([((histograms - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d.sum()
        centres.append(histograms[rng.choice(n, p=d / total)] if total > 0 else histograms[rng.integers(n)])
    centres = np.stack(centres)
    assign = np.zeros(n, np.int64)
    for _ in range(iterations):
        d = (histograms ** 2).sum(1)[:, None] - 2 * histograms @ centres.T + (centres ** 2).sum(1)[None]
        new = d.argmin(axis=1)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
        for j in range(k):
            members = histograms[assign == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return assign


def product_colours(images: np.ndarray, masks: np.ndarray, products: np.ndarray, usable: np.ndarray,
                    groups: int = DEFAULT_GROUPS, seed: int = 0) -> np.ndarray:
    """int64 [n images]: each image's product's colour group (the most common over its photos)."""
    idx = np.flatnonzero(usable)
    k = max(2, min(groups, len(np.unique(products[idx])) // 4 or 2))
    assign = np.zeros(len(images), np.int64)
    assign[idx] = colour_groups(colour_histograms(images[idx], masks[idx]), k, seed)
    out = np.zeros(len(images), np.int64)
    for product in np.unique(products[idx]):
        photos = idx[products[idx] == product]
        out[products == product] = np.bincount(assign[photos]).argmax()
    return out
