"""The item alone: a searched box of a busy photo, its surface and props replaced by the catalogue's backdrop.

A box around an item on a table still shows the table: wood grain, a bedsheet's folds, a mug's rim.
The embedder learned items on the catalogue's plain backgrounds, and framing (ml.framing) can only
crop and clean an image whose border is one plain background. So before a box of a busy photo is
searched, the version's localiser (ml.localiser) marks the item's pixels and everything else
becomes the catalogue's background colour: the model then sees the item as it saw the catalogue's
packshots, and framing crops to it as it does to them.

The localiser runs on a window around the box with some of the photo's surroundings (it learned
items at 0.2-0.8 of its frame, and a tight box is nearly all item), its probabilities are enlarged
to the box's pixels, and only the item's own parts are kept: the largest part and any part nearly as
large (a strap, a second shoe), not a neighbour's corner reaching into the box. A mask that is
nearly empty or nearly the whole box is no item found; the box is then searched as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ml.proposals import _components

CONTEXT = 1.5  # the localiser's window spans this many times the box's longer side (items at ~0.65 of it)
KEEP_PART = 0.25  # a part of the mask with at least this share of the largest part's pixels is the item's too
MIN_ITEM_SHARE = 0.08  # less of the box than this marked as item: nothing found, search the box as it is
MAX_ITEM_SHARE = 0.97  # more than this: the localiser sees no surface to remove
ITEM_LEVEL = 0.5  # a pixel is the item's where the localiser's probability is above this
EDGE = (0.3, 0.7)  # probabilities from EDGE[0] (surface) to EDGE[1] (item) blend the two: soft edges


@dataclass(frozen=True)
class Isolated:
    image: np.ndarray  # uint8 RGB [h, w, 3]: the box's pixels, the surface replaced by the backdrop
    item_share: float  # the share of the box kept as item


def context_window(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a square around the box's centre CONTEXT times its longer side, in the photo."""
    x, y, w, h = box
    half = CONTEXT * max(w, h) / 2
    cx, cy = x + w / 2, y + h / 2
    return (
        max(0, int(np.floor(cx - half))),
        max(0, int(np.floor(cy - half))),
        min(width, int(np.ceil(cx + half))),
        min(height, int(np.ceil(cy + half))),
    )


def _item_parts(solid: np.ndarray) -> np.ndarray:
    """The mask's largest connected part and the parts at least KEEP_PART of its size."""
    labels, count = _components(solid)
    if count <= 1:
        return solid
    sizes = np.bincount(labels[solid], minlength=count)
    keep = sizes >= KEEP_PART * sizes.max()
    return solid & keep[np.maximum(labels, 0)] & (labels >= 0)


def isolate(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    probability,
    background: tuple[int, int, int],
) -> Isolated | None:
    """The box (x, y, w, h) of uint8 RGB `image` [H, W, 3] with everything but its item replaced by
    `background`; None when the localiser finds no item to keep in it (see the module's docstring).

    probability: a function from a uint8 RGB window [h, w, 3] to the item probability map [h', w'] over
    that window (ml.localiser.item_probability), at any resolution."""
    height, width = image.shape[:2]
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"box must lie inside the {width}x{height} photo. Received: box={box}")
    wx0, wy0, wx1, wy1 = context_window(box, width, height)
    prob = np.asarray(probability(image[wy0:wy1, wx0:wx1]), np.float32)
    full = np.asarray(Image.fromarray(prob, "F").resize((wx1 - wx0, wy1 - wy0), Image.Resampling.BILINEAR))
    p = full[y - wy0 : y - wy0 + h, x - wx0 : x - wx0 + w]
    solid = _item_parts(p > ITEM_LEVEL)
    share = float(solid.mean())
    if share < MIN_ITEM_SHARE or share > MAX_ITEM_SHARE:
        return None
    # Soft edges, but only around the kept parts (a neighbour's part does not fade back in).
    near = np.asarray(Image.fromarray(solid.astype(np.uint8) * 255, "L").filter(_grow(w, h)), np.uint8) > 0
    alpha = np.clip((p - EDGE[0]) / (EDGE[1] - EDGE[0]), 0.0, 1.0) * near
    alpha = np.maximum(alpha, solid.astype(np.float32))
    crop = image[y : y + h, x : x + w].astype(np.float32)
    out = crop * alpha[..., None] + np.asarray(background, np.float32)[None, None, :] * (1.0 - alpha[..., None])
    return Isolated(image=np.clip(out + 0.5, 0, 255).astype(np.uint8), item_share=round(share, 4))


def _grow(w: int, h: int):
    """A max filter about 2% of the box's side (odd, at least 3 px): how far soft edges may reach."""
    size = max(3, int(round(0.02 * max(w, h))) | 1)
    return ImageFilter.MaxFilter(size)
