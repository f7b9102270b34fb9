"""Colour as a training signal the images give themselves.

A catalogue rarely has a colour column, but its photos show colour: the histogram of each framed
item's pixels (ml.framing's mask keeps the background out), averaged over a product's photos and
clustered into as many colour groups as the catalogue shows (the k-means of the best silhouette),
gives every product a colour label that training can learn like the category. Deterministic for
a seed; NumPy only.

On the photo benchmark's catalogue (bench/photos.py, seed 7), pairs of products in one group that
share the generator's colour name / pairs sharing a colour name that land in one group: 0.51-0.57 /
0.85-0.90 (9 groups: it merges colours rather than splitting them), against 0.72 / 0.44 for 24 groups
of single photos with each product taking its photos' most common group.
"""

from __future__ import annotations

import numpy as np

BINS = 4  # per channel: 64 colour cells
MIN_GROUPS, MAX_GROUPS = 4, 32  # the numbers of colour groups choose_groups tries
RESTARTS = 8  # k-means runs per number of groups (the lowest inertia is kept)
SAMPLE = 2000  # products the groups are fitted on (all are assigned)


def colour_histograms(images: np.ndarray, masks: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, 64]: the square root of each item's colour histogram (Hellinger space).
    images uint8 [N, s, s, 3]; masks uint8 [N, s, s] (255 = item); indices: the rows to use (default
    all), read a chunk at a time, so a memory-mapped cache is never copied whole into memory.

    Soft cells: each pixel shares its count between the two nearest cell centres of each channel
    (trilinear), so a colour photographed a little lighter or darker moves its histogram a little
    instead of jumping to another cell at a boundary."""
    indices = np.arange(len(images)) if indices is None else np.asarray(indices, np.int64)
    n = len(indices)
    out = np.zeros((n, BINS**3), np.float32)
    pixels = images.shape[1] * images.shape[2]
    offsets = np.arange(n, dtype=np.int64)[:, None] * BINS**3
    for start in range(0, n, 256):  # in chunks: a whole catalogue's pixels would not fit in memory
        chunk = slice(start, start + 256)
        rows = indices[chunk]
        block = np.asarray(images[rows])
        m = len(block)
        at = block.reshape(m, pixels, 3).astype(np.float32) * (BINS / 256.0) - 0.5
        low = np.clip(np.floor(at), 0, BINS - 2)
        high_share = np.clip(at - low, 0.0, 1.0)
        low = low.astype(np.int64)
        weight = (np.asarray(masks[rows]).reshape(m, pixels) > 127).astype(np.float32) + 1e-3
        counts = np.zeros(m * BINS**3, np.float64)
        for corner in range(8):  # the 2 x 2 x 2 cells around each pixel
            up = [(corner >> c) & 1 for c in range(3)]
            cell = ((low[..., 0] + up[0]) * BINS + low[..., 1] + up[1]) * BINS + low[..., 2] + up[2]
            share = weight.copy()
            for c in range(3):
                share *= high_share[..., c] if up[c] else 1.0 - high_share[..., c]
            counts += np.bincount((cell + offsets[:m]).ravel(), weights=share.ravel(), minlength=m * BINS**3)
        out[chunk] = counts.reshape(m, BINS**3)  # an empty mask counts the whole image (the 1e-3)
    return np.sqrt(out / out.sum(axis=1, keepdims=True))


def _kmeans(
    x: np.ndarray, groups: int, rng: np.random.Generator, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray, float]:
    """(assignment int64 [n], centres [k, d], inertia) of one k-means++ run."""
    n = len(x)
    k = max(1, min(groups, n))
    centres = [x[rng.integers(n)]]
    d = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d.sum()
        centres.append(x[rng.choice(n, p=d / total)] if total > 0 else x[rng.integers(n)])
        d = np.minimum(d, ((x - centres[-1]) ** 2).sum(axis=1))
    centres = np.stack(centres).astype(np.float64)
    assign = np.full(n, -1, np.int64)
    for _ in range(iterations):
        dist = _sq_distances(x, centres)
        new = dist.argmin(axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    inertia = float(_sq_distances(x, centres)[np.arange(n), assign].sum())
    return assign, centres, inertia


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.maximum((x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None], 0.0)


def silhouette(x: np.ndarray, assign: np.ndarray) -> float:
    """Mean silhouette of a clustering (Euclidean): how much closer each row is to its own group
    than to the next one, in [-1, 1]."""
    if len(np.unique(assign)) < 2:
        return -1.0
    dist = np.sqrt(_sq_distances(x, x))
    own = np.zeros(len(x))
    other = np.full(len(x), np.inf)
    for j in np.unique(assign):
        member = assign == j
        total = dist[:, member].sum(axis=1)
        own = np.where(member, total / max(int(member.sum()) - 1, 1), own)
        other = np.where(member, other, np.minimum(other, total / member.sum()))
    return float(np.mean((other - own) / np.maximum(np.maximum(own, other), 1e-12)))


def choose_groups(
    histograms: np.ndarray, seed: int = 0, candidates: range | None = None, restarts: int = RESTARTS
) -> tuple[int, np.ndarray]:
    """(k, centres [k, 64]): the number of colour groups the histograms fall into most clearly
    (the k-means of the best silhouette, best of `restarts` runs for each k), fitted on a sample of
    at most SAMPLE rows."""
    rng = np.random.default_rng(seed)
    x = histograms.astype(np.float64)
    if len(x) > SAMPLE:
        x = x[np.sort(rng.choice(len(x), SAMPLE, replace=False))]
    candidates = candidates or range(MIN_GROUPS, max(MIN_GROUPS, min(MAX_GROUPS, len(x) // 4)) + 1)
    best: tuple[float, int, np.ndarray] | None = None
    for k in candidates:
        runs = [_kmeans(x, k, rng) for _ in range(restarts)]
        assign, centres, _ = min(runs, key=lambda run: run[2])
        score = silhouette(x, assign)
        if best is None or score > best[0]:
            best = (score, k, centres)
    return best[1], best[2]


def product_colours(
    images: np.ndarray, masks: np.ndarray, products: np.ndarray, usable: np.ndarray, seed: int = 0
) -> np.ndarray:
    """int64 [n images]: each image's product's colour group.

    A product's colour is the mean histogram of its photos (so one photo's light or background
    counts for less), the products are grouped by k-means with the number of groups the catalogue
    shows most clearly (choose_groups), and every photo of a product gets its product's group."""
    idx = np.flatnonzero(usable)
    out = np.zeros(len(images), np.int64)
    ids, inverse = np.unique(products[idx], return_inverse=True)
    if len(ids) < 2 * MIN_GROUPS:  # too few products to group (none usable included)
        return out
    histograms = colour_histograms(images, masks, idx)
    inverse = inverse.reshape(-1)
    per_product = np.zeros((len(ids), histograms.shape[1]), np.float64)
    np.add.at(per_product, inverse, histograms)
    per_product /= np.bincount(inverse, minlength=len(ids))[:, None]
    _, centres = choose_groups(per_product, seed)
    group = _sq_distances(per_product, centres).argmin(axis=1)
    lookup = dict(zip(ids.tolist(), group.tolist()))
    return np.array([lookup.get(int(p), 0) for p in products], np.int64)
