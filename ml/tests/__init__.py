"""Tests for ml/ (plain unittest, no database). Helpers: tiny generated images of coloured shapes."""

from __future__ import annotations

import numpy as np

SHAPES = ("square", "circle", "bar", "cross")


def shape_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3]: one shape of random colour, size and position on a dark background."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 40, 3)
    colour = rng.integers(90, 256, 3)
    r = int(rng.integers(size // 5, size // 3 + 1))
    cy, cx = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    yy, xx = np.mgrid[:size, :size]
    if kind == "square":
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif kind == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif kind == "bar":
        mask = (abs(yy - cy) <= max(1, r // 3)) & (abs(xx - cx) <= r + 2)
    else:
        w = max(1, r // 3)
        mask = ((abs(yy - cy) <= w) & (abs(xx - cx) <= r)) | ((abs(xx - cx) <= w) & (abs(yy - cy) <= r))
    img[mask] = colour
    return img


def shapes_dataset(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [n, size, size, 3], labels [n]) with the classes of SHAPES in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SHAPES)
    images = np.stack([shape_image(SHAPES[label], size, rng) for label in labels])
    return images, labels
