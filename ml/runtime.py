"""Loading embedding models once per process (after a worker's fork, never at import time)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from ml.artifacts import meta_check

if TYPE_CHECKING:
    from ml.inference import Embedder
    from ml.models import ModelVersion

_cache: OrderedDict[int, Embedder] = OrderedDict()
_lock = threading.Lock()
# The active version and one being indexed beside it; older ones are dropped (least recently used),
# so a long-lived worker that indexed many versions does not hold every model in memory.
CACHE_SIZE = 2


def embedder_for(model_version: ModelVersion) -> Embedder:
    """The version's Embedder, loaded on first use in this process. Raises ml.artifacts.ModelLoadError,
    also when its meta.json disagrees with the row (dim, image size, labels)."""
    with _lock:
        embedder = _cache.get(model_version.pk)
        if embedder is None:
            from ml.inference import Embedder  # TensorFlow loads here, on first use

            embedder = Embedder.load(model_version.workdir)
            meta_check(
                embedder.meta,
                path=embedder.path,
                dim=model_version.dim,
                image_size=model_version.image_size,
                label_names=model_version.label_names,
            )
            _cache[model_version.pk] = embedder
        _cache.move_to_end(model_version.pk)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return embedder


def cached_versions() -> list[int]:
    """Ids of the versions whose models this process holds, least recently used first."""
    with _lock:
        return list(_cache)


def forget(model_version_id: int | None = None) -> None:
    """Drop cached models (all, or one version's), e.g. after its files were replaced."""
    with _lock:
        if model_version_id is None:
            _cache.clear()
        else:
            _cache.pop(model_version_id, None)
