"""One stored vector, two questions: the parts of a composed vector weighed per use, at query time.

A deep_ranking version serves one unit vector made of parts (ml.layers.Compose): the instance
embedding ("this very product"), the category head's probabilities and the colour-group head's
(each as the square root of a distribution). For unit stored vectors x, the L2 order from a query q
is the order of q . x, so scaling the query's parts by w re-weighs each part's agreement in the
ranking, with the same rows and the same HNSW index (a query is any point; only its direction
matters to the order).

- photo search asks "which product is this?": the instance part counts twice as much, and the
  colour-group part not at all (its groups are clusters of the catalogue's own colour histograms;
  on a new photo in other light the head's guess misled more than it helped);
- similar items asks "what looks like this?" (same kind, same colour): the category part twice
  as much, the instance part at 0.3, so kind and colour rank first and the look of the product
  orders within them; the item's measured colours (ml.layers.ItemColours, in versions that serve
  them) weigh six times their small share, and the learned colour groups not at all: the groups
  are coarse (a catalogue's orange and yellow can share one) where the measured hue cells are
  not, and with them weighed the same-category share fell (offline on the photo benchmark's seed-7
  vectors: category x1.5 / groups x0.5 gave same category 0.934 and category+colour 0.629,
  category x2 / groups x0 0.972 and 0.635).

Against one ranking for both uses, on the photo benchmark (bench/photos.py, docs/benchmarks.md):
photo search hit@1 0.878 -> 0.901; similar items, same category 0.817 -> 0.912 and same category and
colour 0.517 -> 0.557. The reported distance stays the plain L2 distance between the unweighted
vectors (search.queries.nearest.nearest_products ranks by the weighted query and reports the plain one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CANDIDATES", "PHOTO", "SIMILAR", "QUERY_WEIGHTS", "candidates", "query_vector"]

PHOTO = "photo"
SIMILAR = "similar"

# part name (ml.layers.vector_parts: the layer that feeds it) -> weight; parts not named keep 1.
QUERY_WEIGHTS: dict[str, dict[str, float]] = {
    PHOTO: {"instance_embedding": 2.0, "probabilities": 1.0, "colours": 0.0, "item_colours": 0.0},
    SIMILAR: {"instance_embedding": 0.3, "probabilities": 2.0, "colours": 0.0, "item_colours": 6.0},
}

# Products a weighted query asks the HNSW index for before keeping its k (each ranked by the exact
# weighted distance; nearest_products walks with ef_search >= 2x that many). The graph is built on the
# unweighted vectors, and a new photo's weighted query is found less well there as the catalogue
# grows: recall@10 against the exact weighted ranking at 250k vectors, ef_search 100: 0.94;
# with 200 candidates (ef_search 400): 0.989, db p50 4.5 -> 16.4 ms on a loaded 2-core host
# (bench/weighted_recall.py, docs/benchmarks.md, "Recall of the weighted queries"). Similar items keep 0.996 at 100.
CANDIDATES: dict[str, int] = {PHOTO: 200, SIMILAR: 0}


def candidates(k: int, use: str, rank_vector: np.ndarray | None) -> int:
    """How many products to ask nearest_products for, to keep the first k: more for a weighted query."""
    return k if rank_vector is None else max(k, CANDIDATES[use])


def query_vector(vector: Sequence[float] | np.ndarray, parts: Sequence[dict] | None, use: str) -> np.ndarray | None:
    """The query to rank by for `use` (PHOTO or SIMILAR), or None where nothing changes: a vector of
    one part, a version trained before parts were recorded, or a layout that does not fit the vector."""
    if use not in QUERY_WEIGHTS:
        raise ValueError(f"use must be one of {sorted(QUERY_WEIGHTS)}. Received: use={use!r}")
    if not parts or len(parts) < 2:
        return None
    vector = np.asarray(vector, dtype=np.float32)
    sizes = [int(part["size"]) for part in parts]
    if sum(sizes) != vector.shape[-1]:
        return None
    weights = QUERY_WEIGHTS[use]
    scale = np.concatenate(
        [np.full(size, weights.get(part["name"], 1.0), np.float32) for size, part in zip(sizes, parts, strict=True)]
    )
    if np.all(scale == 1.0):
        return None
    return vector * scale
