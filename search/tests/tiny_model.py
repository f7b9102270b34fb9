"""A real, tiny trained embedding model for tests: one epoch on 16 generated 16-px images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ml.models import ModelVersion

from .factories import COLORS, SHAPES, shape_image

IMAGE_SIZE = 16
LABEL_NAMES = ["Square", "Circle", "Triangle", "Bar"]


def tiny_model_train(workdir: Path) -> int:
    """Train into `workdir` (embedder.keras + meta.json); returns the embedding dimension."""
    from ml.hparams import HParams
    from ml.training import train

    images = np.stack([np.asarray(shape_image(s, color=c, size=IMAGE_SIZE)) for s in SHAPES for c in COLORS])
    labels = [i for i in range(len(SHAPES)) for _ in COLORS]
    hparams = HParams.for_architecture(
        "classifier", image_size=IMAGE_SIZE, dim=8, batch_size=8, epochs=1, augment=False, eval_fraction=0.0
    )
    result = train(architecture="classifier", hparams=hparams, labels=labels, label_names=LABEL_NAMES, workdir=workdir, images=images)
    return result.dim


_trained: Path | None = None


def tiny_model_version(**fields) -> ModelVersion:
    """A succeeded ModelVersion whose workdir holds the tiny model (trained once per test process)."""
    global _trained
    version = ModelVersion.objects.create(
        architecture=ModelVersion.Architecture.CLASSIFIER,
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
    import json

    dim = json.loads((version.workdir / "meta.json").read_text())["dim"]
    ModelVersion.objects.filter(pk=version.pk).update(dim=dim)
    version.refresh_from_db()
    return version


def install_stand_in_embedder_if_needed() -> None:
    """Until ml/inference.py lands, put a minimal Embedder (same contract) where ml.runtime finds it.

    Used only when `ml.inference` cannot be imported; the real one is used as soon as it exists.
    """
    import sys
    import types

    try:
        import ml.inference  # noqa: F401
    except ImportError:
        pass
    else:
        return
    import json

    import keras
    from PIL import Image

    from ml.preprocess import open_image, pil_batch

    class ModelLoadError(Exception):
        pass

    class Embedder:
        def __init__(self, model, meta):
            self.model, self.dim, self.image_size = model, int(meta["dim"]), int(meta["image_size"])
            self.label_names = meta.get("label_names", [])

        @classmethod
        def load(cls, workdir):
            workdir = Path(workdir)
            try:
                return cls(keras.saving.load_model(workdir / "embedder.keras"), json.loads((workdir / "meta.json").read_text()))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(str(exc)) from exc

        def embed_files(self, paths, batch_size=64):
            images, failures, ok = [], {}, []
            for i, path in enumerate(paths):
                try:
                    images.append(open_image(Path(path).read_bytes()))
                    ok.append(i)
                except Exception as exc:  # noqa: BLE001
                    failures[i] = f"unreadable image: {exc}"
            if not images:
                return np.zeros((0, self.dim), np.float32), failures
            return self._run(images)["embedding"], failures

        def _run(self, images):
            out = self.model.predict(pil_batch(images, self.image_size), verbose=0)
            out = out if isinstance(out, dict) else {"embedding": out}
            return {key: np.asarray(value, np.float32) for key, value in out.items()}

        def embed_pil(self, image: Image.Image):
            return self._run([image])["embedding"][0]

        def guess_category(self, image):
            probabilities = self._run([image]).get("probabilities")
            if probabilities is None:
                return None
            best = int(np.argmax(probabilities[0]))
            return self.label_names[best], float(probabilities[0][best])

    module = types.ModuleType("ml.inference")
    module.Embedder, module.ModelLoadError = Embedder, ModelLoadError
    sys.modules["ml.inference"] = module
