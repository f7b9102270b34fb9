"""Item boxes in a photo: where the products are, best first, for photo search to crop to.

A model version with a learned localiser (`version.metrics["localiser"]`) answers with it
(`ml.localiser.localiser_boxes`). Otherwise the classical proposer reads the photo the way framing
does (`ml.framing.estimate_background`: a colour plane fitted to the border, and what differs from
it by more than the border's noise is item), then splits the item mask into connected parts, one box
per item, so a shirt beside a bag gives two boxes. Specks and "items" that are the whole photo are
not proposed, and a photo with nothing on its background (a plain wall, a blank page) gives [].

Cheap: the analysis runs on a copy of at most WORK_PIXELS pixels (about 15 ms for a 480 px photo on
one core), and the boxes come back in pixels of the photo given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .framing import (
    MAX_ITEM_SHARE,
    MIN_BOX_SHARE,
    MIN_ITEM_SHARE,
    _opened,
    estimate_background,
)

if TYPE_CHECKING:
    from .models import ModelVersion

logger = logging.getLogger(__name__)

WORK_PIXELS = 160 * 120  # analyse a copy of at most this many pixels (a 4:3 photo at 160 px): items >= 2% of a side
MERGE_GAP = 0.02  # parts of the mask closer than this share of the longest side are one item (a strap, a logo)
RELATIVE_SPECK = 0.05  # a part with less than this share of the largest part's pixels is a speck
MAX_PROPOSAL_SHARE = 0.9  # a box covering more than this share of the photo is the photo, not an item in it
CONTAINED = 0.8  # a box with this share of its area inside a better box is part of that item
MAX_BOXES = 5  # more choices than this help nobody pick one
MARGIN = 0.06  # each box grows by this share of its side (at least one working pixel): the crop keeps a band of
# background around the item, which framing reads the background from (its border band is 4% of a side)
FULL_SIZE_SHARE = 0.15  # an item covering this share of the photo counts as fully sized in the score
# The score's parts: how large the item is, how clearly it stands out from the background, and how
# much of its box it fills (a solid thing rather than a scatter of edges). The weights sum to 1.
SIZE_WEIGHT, CONTRAST_WEIGHT, FILL_WEIGHT = 0.45, 0.3, 0.25
EDGE_PENALTY = 0.15  # per side of the photo a box touches: an item cut by the frame is a weaker guess
# A studio backdrop's border stays within this many 8-bit levels of its fitted plane (90% of its pixels).
# Photo catalogue (1,000 products): every held-out packshot and catalogue photo is within it, a third of
# shoppers' photos on a surface are above it (the rest are told by their props: more than one item).
QUIET_NOISE = 8.0


@dataclass(frozen=True)
class Box:
    """An item's box in pixels of the photo (x, y: top-left corner), with a score in [0, 1]."""

    x: int
    y: int
    w: int
    h: int
    score: float


def propose_boxes(image: np.ndarray, *, version: ModelVersion | None = None) -> list[Box]:
    """Boxes around the items in uint8 RGB `image` [H, W, 3], best first; [] when no item is found.
    A version whose metrics name a localiser uses it; otherwise the classical proposer."""
    if version is not None and version.metrics.get("localiser"):
        try:
            from .localiser import localiser_boxes
        except ImportError:
            logger.warning("Model version %s has a localiser but ml.localiser is not available", version.pk)
        else:
            return localiser_boxes(version, image)
    return classical_boxes(image)


def _work_copy(image: np.ndarray) -> np.ndarray:
    """float32 copy of uint8 RGB `image` [H, W, 3] with at most WORK_PIXELS pixels."""
    rgb = np.ascontiguousarray(image, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"propose_boxes takes a uint8 RGB array [H, W, 3]; received shape {rgb.shape}")
    height, width = rgb.shape[:2]
    work = Image.fromarray(rgb)
    scale = min(1.0, float(np.sqrt(WORK_PIXELS / (width * height))))
    if scale < 1.0:  # by area, so a long narrow photo keeps detail across its narrow side
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = work.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(work, np.float32)


def plain_background(image: np.ndarray) -> bool:
    """Whether uint8 RGB `image` [H, W, 3] shows its items on one plain background, as framing reads it."""
    return bool(estimate_background(_work_copy(image)).plain)


def packshot_like(image: np.ndarray) -> bool:
    """Whether uint8 RGB `image` [H, W, 3] is one item on a clean backdrop, as a packshot shows it: a plain
    background whose border is as quiet as a studio backdrop (wood grain, a bedsheet's weave or a carpet
    are louder, though framing's threshold follows their noise and calls them plain), and one item on it
    (a shopper's photo on a smooth surface has a mug or a phone beside the item)."""
    a = _work_copy(image)
    bg = estimate_background(a)
    return bool(bg.plain and bg.noise <= QUIET_NOISE and len(_boxes_on(a, bg, image.shape[1], image.shape[0])) == 1)


def classical_boxes(image: np.ndarray) -> list[Box]:
    """The item boxes found against the photo's own background (see the module's docstring)."""
    a = _work_copy(image)
    return _boxes_on(a, estimate_background(a), np.shape(image)[1], np.shape(image)[0])


def _boxes_on(a: np.ndarray, bg, width: int, height: int) -> list[Box]:
    """classical_boxes of the working copy `a` with its background `bg`, in pixels of a width x height photo."""
    h, w = a.shape[:2]
    if not bg.plain:  # the border is not one background: nothing to tell items from
        return []
    distance = np.abs(a - bg.plane).max(axis=-1)
    fg = distance > bg.threshold
    # Without the specks a textured background leaves above the threshold (as framing does); an item
    # too thin to survive the opening keeps its raw mask, and its parts are then not joined either.
    solid = _opened(fg)
    gap = max(1, round(MERGE_GAP * max(h, w)))
    if solid.mean() >= MIN_ITEM_SHARE:
        fg = solid
    else:
        gap = 0
    share = float(fg.mean())
    if share < MIN_ITEM_SHARE or share > MAX_ITEM_SHARE:
        return []
    labels, count = _components(_grown(fg, gap))
    if count == 0:
        return []
    item_labels = labels[fg]
    ys, xs = np.nonzero(fg)
    pixels = np.bincount(item_labels, minlength=count)
    tops, lefts = np.full(count, h), np.full(count, w)
    bottoms, rights = np.zeros(count, int), np.zeros(count, int)
    np.minimum.at(tops, item_labels, ys)
    np.minimum.at(lefts, item_labels, xs)
    np.maximum.at(bottoms, item_labels, ys + 1)
    np.maximum.at(rights, item_labels, xs + 1)
    excess = np.clip((distance[fg] - bg.threshold) / bg.threshold, 0.0, 1.0)
    contrast = np.bincount(item_labels, weights=excess, minlength=count) / np.maximum(pixels, 1)
    largest = pixels.max()
    candidates = []
    for i in range(count):
        if pixels[i] == 0:
            continue
        t, l, b, r = int(tops[i]), int(lefts[i]), int(bottoms[i]), int(rights[i])
        box_px = (b - t) * (r - l)
        if pixels[i] < RELATIVE_SPECK * largest or pixels[i] < MIN_ITEM_SHARE * h * w or box_px < MIN_BOX_SHARE * h * w:
            continue
        if box_px > MAX_PROPOSAL_SHARE * h * w:
            continue
        size = min(1.0, float(np.sqrt(pixels[i] / (h * w) / FULL_SIZE_SHARE)))
        fill = pixels[i] / box_px
        touching = (t == 0) + (l == 0) + (b == h) + (r == w)
        score = (SIZE_WEIGHT * size + CONTRAST_WEIGHT * float(contrast[i]) + FILL_WEIGHT * fill) * (
            1 - EDGE_PENALTY * touching
        )
        candidates.append((float(np.clip(score, 0.0, 1.0)), (t, l, b, r)))
    candidates.sort(key=lambda c: -c[0])
    kept: list[tuple[float, tuple[int, int, int, int]]] = []
    for score, box in candidates:
        if any(_inside_share(box, other) > CONTAINED for _, other in kept):
            continue
        kept.append((score, box))
        if len(kept) == MAX_BOXES:
            break
    sx, sy = width / w, height / h
    return [_scaled(box, score, sx, sy, width, height) for score, box in kept]


def _grown(mask: np.ndarray, steps: int) -> np.ndarray:
    """The mask dilated `steps` times with a 3 x 3 cross."""
    grown = mask.copy()
    for _ in range(steps):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: labels [h, w] (0..count-1 inside the mask, -1
    outside) and count. Each pixel takes the smallest pixel index among its neighbours and then the
    label of the pixel its label points at (pointer jumping), until nothing changes."""
    h, w = mask.shape
    none = h * w
    lab = np.where(mask, np.arange(h * w).reshape(h, w), none)
    while True:
        low = lab.copy()
        np.minimum(low[1:], lab[:-1], out=low[1:])
        np.minimum(low[:-1], lab[1:], out=low[:-1])
        np.minimum(low[:, 1:], lab[:, :-1], out=low[:, 1:])
        np.minimum(low[:, :-1], lab[:, 1:], out=low[:, :-1])
        low[~mask] = none
        flat = low.ravel()
        inside = flat < none
        for _ in range(4):
            flat[inside] = flat[flat[inside]]
        if np.array_equal(low, lab):
            break
        lab = low
    roots, labels = np.unique(lab[mask], return_inverse=True)
    out = np.full((h, w), -1, np.int64)
    out[mask] = labels
    return out, len(roots)


def _inside_share(box, other) -> float:
    """The share of `box`'s area (top, left, bottom, right) that lies inside `other`."""
    t, l, b, r = box
    ot, ol, ob, orr = other
    inter = max(0, min(b, ob) - max(t, ot)) * max(0, min(r, orr) - max(l, ol))
    return inter / max(1, (b - t) * (r - l))


def _scaled(box, score: float, sx: float, sy: float, width: int, height: int) -> Box:
    """A working-size box (top, left, bottom, right) in the photo's pixels, with its margin."""
    t, l, b, r = box
    mx = max(1.0, MARGIN * (r - l)) * sx
    my = max(1.0, MARGIN * (b - t)) * sy
    x0, y0 = max(0, int(np.floor(l * sx - mx))), max(0, int(np.floor(t * sy - my)))
    x1, y1 = min(width, int(np.ceil(r * sx + mx))), min(height, int(np.ceil(b * sy + my)))
    return Box(x=x0, y=y0, w=max(1, x1 - x0), h=max(1, y1 - y0), score=round(score, 3))
