"""A real, tiny trained embedding model for tests: one epoch on 16 generated 16-px images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ml.models import ModelVersion

from .factories import COLORS, SHAPES, serving_set, shape_image

IMAGE_SIZE = 16
LABEL_NAMES = ["Square", "Circle", "Triangle", "Bar"]


def tiny_model_train(workdir: Path) -> int:
    """Train into `workdir` (embedder.keras + meta.json); returns the embedding dimension."""
    from ml.architectures import defaults
    from ml.training import train

    images = np.stack([np.asarray(shape_image(s, color=c, size=IMAGE_SIZE)) for s in SHAPES for c in COLORS])
    labels = [i for i in range(len(SHAPES)) for _ in COLORS]
    hparams = defaults(
        "classifier", image_size=IMAGE_SIZE, dim=8, batch_size=8, epochs=1, augment=False, eval_fraction=0.0
    )
    result = train(
        architecture="classifier",
        hparams=hparams,
        labels=labels,
        label_names=LABEL_NAMES,
        workdir=workdir,
        images=images,
    )
    return result.dim


_trained: Path | None = None


def tiny_model_version(*, auto_activate: bool = False, **fields) -> ModelVersion:
    """A succeeded ModelVersion whose workdir holds the tiny model (trained once per test process)."""
    global _trained
    version = ModelVersion.objects.create(
        architecture="classifier",
        status=ModelVersion.Status.SUCCEEDED,
        image_size=IMAGE_SIZE,
        label_names=LABEL_NAMES,
        **fields,
    )
    if _trained is None or not (_trained / "embedder.keras").exists():
        source = Path(version.workdir).parent / "tiny-shared"
        shutil.rmtree(source, ignore_errors=True)
        tiny_model_train(source)
        _trained = source
    shutil.rmtree(version.workdir, ignore_errors=True)
    shutil.copytree(_trained, version.workdir)
    dim = json.loads((version.workdir / "meta.json").read_text())["dim"]
    ModelVersion.objects.filter(pk=version.pk).update(dim=dim)
    version.refresh_from_db()
    if auto_activate:
        serving_set(version, auto_activate=True)
    return version
