"""Using a trained embedding model: load once, embed arrays, files, PIL images; guess a category."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import ml.architectures  # noqa: F401  (registers the custom layers and losses for loading)
from ml.artifacts import ModelLoadError, embedder_load
from ml.preprocess import arrays_to_input, decode_and_resize, file_to_array, pil_to_array

__all__ = ["Embedder", "ModelLoadError"]


@dataclass
class Embedder:
    model: keras.Model
    meta: dict[str, Any]
    path: Path
    # Traced once per Embedder (per process) with a [None, ...] signature: any batch size reuses them.
    _forward: Any = field(default=None, init=False, repr=False, compare=False)
    _decode: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Embedder":
        """Load a training workdir (or its embedder.keras, with meta.json beside it); see ml.artifacts."""
        model, meta, model_path = embedder_load(path)
        return cls(model=model, meta=meta, path=model_path)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def has_classifier_head(self) -> bool:
        return bool(self.meta["has_classifier_head"])

    @property
    def flip_average(self) -> bool:
        return bool(self.meta.get("flip_average", False))

    def _forward_flip_average(self, t: tf.Tensor) -> dict[str, tf.Tensor]:
        """Test-time augmentation: an image and its mirror image get one vector (the normalised sum),
        so a product photographed facing left or right lands in the same place."""
        out = self.model(t, training=False)
        mirrored = self.model(tf.reverse(t, axis=[2]), training=False)
        result = {"embedding": tf.math.l2_normalize(out["embedding"] + mirrored["embedding"], axis=-1)}
        if "probabilities" in out:
            result["probabilities"] = (out["probabilities"] + mirrored["probabilities"]) / 2
        return result

    def _predict(self, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        if len(x) == 0:
            return {"embedding": np.zeros((0, self.dim), np.float32)}
        if self._forward is None:
            # A compiled graph, not eager layer-by-layer calls (about 1.5x slower on CPU), and not
            # predict() (which retraces for odd batch sizes): bench/indexing.py measures the difference.
            size = self.image_size
            self._forward = tf.function(
                self._forward_flip_average if self.flip_average else (lambda t: self.model(t, training=False)),
                input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
            )
        out: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(x), batch_size):
            part = self._forward(tf.convert_to_tensor(x[start:start + batch_size], tf.float32))
            for key, value in part.items():
                out.setdefault(key, []).append(np.asarray(value, np.float32))
        return {key: np.concatenate(value) for key, value in out.items()}

    def predict_arrays(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """(vectors [n, dim], class probabilities [n, classes] or None) for same-sized images
        [n, h, w(, 1|3)] in [0, 255]; they are resized to the model's input as in training."""
        x = np.asarray(arrays_to_input(np.asarray(images), self.image_size), np.float32)
        out = self._predict(x, batch_size)
        return out["embedding"], out.get("probabilities")

    def embed_arrays(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float32 [n, dim] for same-sized images [n, h, w(, 1|3)] in [0, 255]."""
        return self.predict_arrays(images, batch_size)[0]

    def embed_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 64
                    ) -> tuple[np.ndarray, dict[int, str]]:
        """(vectors float32 [n, dim], failures {index: reason}). A missing, unreadable or corrupt
        file gets a zero row and an entry in failures; the others are embedded."""
        paths = [os.fspath(p) for p in paths]
        vectors = np.zeros((len(paths), self.dim), np.float32)
        if not paths:
            return vectors, {}
        size = self.image_size
        ok = np.zeros(len(paths), bool)
        try:
            # Fast path: one decoding graph traced once per Embedder. Building and tracing a tf.data
            # pipeline on every call cost ~10x more than decoding a batch of small images.
            for start in range(0, len(paths), batch_size):
                x = self._decode_files(paths[start:start + batch_size])
                vectors[start:start + len(x)] = self._predict(x, batch_size)["embedding"]
                ok[start:start + len(x)] = True
        except tf.errors.OpError:
            # A file TensorFlow cannot read fails its whole batch: redo the rest file by file.
            rest = np.flatnonzero(~ok)
            ds = tf.data.Dataset.from_tensor_slices((rest, [paths[i] for i in rest]))
            ds = ds.map(lambda i, p: (i, decode_and_resize(tf.io.read_file(p), size)),
                        num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)
            for idx, x in ds:
                idx = idx.numpy()
                vectors[idx] = self._predict(x.numpy(), batch_size)["embedding"]
                ok[idx] = True
        # TensorFlow cannot decode some images the catalogue accepts (WebP, CMYK JPEG): PIL tries
        # those; only a file neither can read is a failure.
        failures, arrays, fallback = {}, [], []
        for i in np.flatnonzero(~ok).tolist():
            try:
                arrays.append(file_to_array(paths[i], size))
                fallback.append(i)
            except Exception as exc:  # noqa: BLE001 - any decoder error is this file's failure reason
                failures[i] = f"{type(exc).__name__}: {exc}"
        if fallback:
            vectors[fallback] = self._predict(np.stack(arrays), batch_size)["embedding"]
        return vectors, failures

    def _decode_files(self, paths: list[str]) -> np.ndarray:
        """float32 [n, s, s, 3] for image files, as decode_and_resize; raises tf.errors.OpError."""
        if self._decode is None:
            size = self.image_size
            spec = tf.TensorSpec([size, size, 3], tf.float32)
            self._decode = tf.function(
                lambda p: tf.map_fn(lambda one: decode_and_resize(tf.io.read_file(one), size), p,
                                    fn_output_signature=spec, parallel_iterations=16),
                input_signature=[tf.TensorSpec([None], tf.string)],
            )
        return self._decode(tf.constant(paths, tf.string)).numpy()

    def embed_pil(self, img: Image.Image) -> np.ndarray:
        """float32 [dim] for one PIL image."""
        return self._predict(pil_to_array(img, self.image_size)[None], 1)["embedding"][0]

    def guess_category(self, img: Image.Image) -> tuple[str, float] | None:
        """(label name, probability) of the most likely category, or None without a classifier head."""
        if not self.has_classifier_head:
            return None
        return self._guess(self._predict(pil_to_array(img, self.image_size)[None], 1))

    def embed_and_guess_pil(self, img: Image.Image) -> tuple[np.ndarray, tuple[str, float] | None]:
        """embed_pil and guess_category from one preprocessing and one model call (photo search)."""
        out = self._predict(pil_to_array(img, self.image_size)[None], 1)
        return out["embedding"][0], (self._guess(out) if self.has_classifier_head else None)

    def _guess(self, out: dict[str, np.ndarray]) -> tuple[str, float] | None:
        if "probabilities" not in out:
            return None
        probs = out["probabilities"][0]
        best = int(np.argmax(probs))
        return self.label_names[best], float(probs[best])

