"""A version's files on disk: the one module that spells their names, saves and loads them.

A version's folder (ModelVersion.workdir, named by the row's artifacts_folder) holds:
    checkpoint.keras  the training model and optimizer after the last complete epoch
    state.json        epochs done, history, seconds spent, the run's architecture and hparams
    tensorboard/      scalars, weight histograms, autoencoder reconstructions, embedding projector
    embedder.keras    the final embedding model (written when all epochs are done)
    meta.json         what using it needs (dim, image_size, label_names, ...), with a schema version
    localiser.keras   the item localiser (ml.localiser), when the version trained one
    localiser.json    its settings (input size, threshold)

Importing this module imports no TensorFlow: the Django side reads metadata and checks it without
loading Keras, which is imported inside the functions that save or load a model.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"
TENSORBOARD = "tensorboard"
EMBEDDER = "embedder.keras"
META = "meta.json"
LOCALISER = "localiser.keras"
LOCALISER_INFO = "localiser.json"
# meta.json's format: 1 is the first (files written before the field existed read as 1). Raise it
# when a key's meaning changes; load() refuses a schema newer than it knows.
META_SCHEMA = 1
META_REQUIRED = ("dim", "image_size", "label_names", "has_classifier_head")


class ModelLoadError(Exception):
    """A model file or its meta.json is missing, unreadable, or disagrees with its record."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot load model from {self.path}: {reason}")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_save(model: keras.Model, path: Path) -> None:
    """Save a Keras model so that a reader never sees half a file."""
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def state_read(workdir: Path) -> dict | None:
    """The checkpoint's state.json, or None when there is no complete checkpoint to resume."""
    if not (workdir / STATE).exists() or not (workdir / CHECKPOINT).exists():
        return None
    return json.loads((workdir / STATE).read_text())


def checkpoint_save(model: keras.Model, workdir: Path, state: dict[str, Any]) -> None:
    """The training model after an epoch, then the state that says which epoch it is."""
    model_save(model, workdir / CHECKPOINT)
    atomic_write_text(workdir / STATE, json.dumps(state, indent=2))


def embedder_save(embedder: keras.Model, workdir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Export the embedding model and its metadata (model first: meta.json marks a complete export).
    Returns (embedder path, meta path)."""
    missing = [key for key in META_REQUIRED if key not in meta]
    if missing:
        raise ValueError(f"meta lacks {missing}. Received: keys={sorted(meta)}")
    model_path, meta_path = workdir / EMBEDDER, workdir / META
    model_save(embedder, model_path)
    atomic_write_text(meta_path, json.dumps({"schema": META_SCHEMA, **meta}, indent=2))
    return model_path, meta_path


def embedder_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(embedder.keras, meta.json) for a version's folder, or for an embedder file with meta beside it."""
    path = Path(path)
    model_path = path / EMBEDDER if path.is_dir() else path
    return model_path, model_path.with_name(META)


def meta_read(path: str | os.PathLike) -> dict[str, Any]:
    """A version's meta.json (given its folder or its embedder file), checked. Raises ModelLoadError."""
    _, meta_path = embedder_paths(path)
    if not meta_path.is_file():
        raise ModelLoadError(meta_path, "file not found")
    try:
        meta = json.loads(meta_path.read_text())
        for key in META_REQUIRED:
            meta[key]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(meta_path, f"invalid meta.json ({exc!r})") from exc
    schema = meta.get("schema", 1)
    if not isinstance(schema, int) or schema > META_SCHEMA:
        raise ModelLoadError(meta_path, f"meta.json schema {schema!r} is newer than this code reads ({META_SCHEMA})")
    return meta


def embedder_load(path: str | os.PathLike) -> tuple[keras.Model, dict[str, Any], Path]:
    """(model, meta, embedder path) from a version's folder or its embedder file. Raises ModelLoadError."""
    model_path, _ = embedder_paths(path)
    if not model_path.is_file():
        raise ModelLoadError(model_path, "file not found")
    meta = meta_read(model_path)
    import keras  # TensorFlow loads here, only when a model is loaded

    import ml.architectures  # noqa: F401  (registers the custom layers and losses for loading)

    try:
        model = keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(model_path, f"not a readable .keras model ({exc!r})") from exc
    return model, meta, model_path


def meta_check(
    meta: dict[str, Any],
    *,
    path: str | os.PathLike,
    dim: int | None,
    image_size: int | None,
    label_names: Sequence[str] | None,
) -> None:
    """Raise ModelLoadError where the files disagree with what the version's record says (a fact
    recorded as None or empty is not known there and is not compared)."""
    recorded = {"dim": dim, "image_size": image_size, "label_names": list(label_names) if label_names else None}
    for key, value in recorded.items():
        if value is not None and meta[key] != value:
            raise ModelLoadError(
                embedder_paths(path)[1], f"meta.json says {key}={meta[key]!r} but the version's record says {value!r}"
            )


def localiser_paths(workdir: str | os.PathLike) -> tuple[Path, Path]:
    """(localiser.keras, localiser.json) of a version's folder."""
    workdir = Path(workdir)
    return workdir / LOCALISER, workdir / LOCALISER_INFO


def localiser_save(model: keras.Model, workdir: Path, info: dict[str, Any]) -> None:
    """Save the localiser and its settings (model first: the settings file marks a complete save)."""
    model_path, info_path = localiser_paths(workdir)
    model_save(model, model_path)
    atomic_write_text(info_path, json.dumps({"schema": META_SCHEMA, **info}, indent=2))


def localiser_load(workdir: str | os.PathLike) -> tuple[keras.Model, dict[str, Any]]:
    """(model, settings) of a version's localiser. Raises ModelLoadError when missing or unreadable."""
    model_path, info_path = localiser_paths(workdir)
    for path in (model_path, info_path):
        if not path.is_file():
            raise ModelLoadError(path, "file not found")
    try:
        info = json.loads(info_path.read_text())
        int(info["input_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(info_path, f"invalid localiser.json ({exc!r})") from exc
    import keras  # TensorFlow loads here, only when a model is loaded

    try:
        model = keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(model_path, f"not a readable .keras model ({exc!r})") from exc
    return model, info
