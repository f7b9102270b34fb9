"""Running the model over a batch of stored image files: the one place indexing calls TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from catalog.models import ProductImage
from ml.models import ModelVersion
from ml.runtime import embedder_for
from ml.workers import worker_devices

__all__ = ["IndexInfrastructureError", "embedding_batch_size", "image_files_embed", "images_embed"]


class IndexInfrastructureError(Exception):
    """A batch cannot be embedded here at all (the model does not load, the storage has no local
    files, the model call fails for a reason in no file: a bug, MemoryError): never a fact about
    its images, so nothing is recorded against them. The task retries, then the job fails with the
    reason."""


def images_embed(
    *, model_version: ModelVersion, images: Sequence[ProductImage]
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Run the model once over `images`: ({image_id: vector}, {image_id: reason}). Raises ModelLoadError."""
    return image_files_embed(model_version=model_version, files=[(image.pk, image.image.name) for image in images])


def image_files_embed(
    *, model_version: ModelVersion, files: Sequence[tuple[int, str]]
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """images_embed for (image id, stored file name) rows: a batch reads just these two columns
    (model instances cost more per row than the database read)."""
    embedder = embedder_for(model_version)
    field = ProductImage._meta.get_field("image")
    failures: dict[int, str] = {}
    readable: list[int] = []
    paths: list[str] = []
    for pk, name in files:
        if not name:  # as FieldFile.path says it
            failures[pk] = (
                f"The image file cannot be opened (The '{field.name}' attribute has no file associated with it.)."
            )
            continue
        try:
            path = field.storage.path(name)
        except NotImplementedError as exc:  # the storage, not the image: every image would "fail"
            raise IndexInfrastructureError(f"The media storage has no local files to embed from ({exc}).") from exc
        except ValueError as exc:  # a name the storage refuses
            failures[pk] = f"The image file cannot be opened ({exc})."
            continue
        readable.append(pk)
        paths.append(path)
    vectors: dict[int, np.ndarray] = {}
    if paths:
        # The task's batch in four model calls of the device's size (a task is 4 x 256 images on a CPU,
        # 4 x 1,024 on a GPU), each decoded while the model runs the previous (ml.inference.embed_files).
        try:
            array, file_failures = embedder.embed_files(paths, batch_size=len(paths))
        except Exception as exc:  # noqa: BLE001 - MemoryError too: not a file's fault (those are in file_failures)
            raise IndexInfrastructureError(
                f"The model call failed, not because of an image ({type(exc).__name__}: {exc})."
            ) from exc
        for index, reason in file_failures.items():
            failures[readable[index]] = str(reason) or "The image could not be read."
        ok = [i for i in range(len(readable)) if i not in file_failures]
        # The contract allows either one row per path or one row per embedded path.
        if len(array) == len(readable):
            rows = ok
        elif len(array) == len(ok):
            rows = list(range(len(ok)))
        else:
            raise RuntimeError(f"The embedder returned {len(array)} vectors for {len(ok)} readable images.")
        for row, i in zip(rows, ok, strict=True):
            vectors[readable[i]] = np.asarray(array[row], dtype=np.float32)
    return vectors, failures


def embedding_batch_size() -> int:
    """Images per indexing task: settings.EMBEDDING_BATCH_SIZE, or EMBEDDING_BATCH_SIZE_GPU when every
    running worker on the embeddings queue reported a GPU (ml.workers): larger batches keep a GPU
    busy and cost fewer database round trips per image."""
    workers = [w for w in worker_devices() if w.alive and "embeddings" in w.queues]
    if workers and all(w.device is not None and w.device.is_gpu for w in workers):
        return settings.EMBEDDING_BATCH_SIZE_GPU
    return settings.EMBEDDING_BATCH_SIZE
