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

import ml.layers  # noqa: F401  (registers the custom layers for loading)
import ml.losses  # noqa: F401  (and the losses)
from catalog.images import InvalidImage
from ml.artifacts import ModelLoadError, embedder_load
from ml.preprocess import Framing, arrays_to_input, bytes_to_input, model_input, png_as_is
from ml.preprocess import decode as decode_bytes

__all__ = ["DECODE_CHUNK", "Embedder", "ModelLoadError"]

# embed_files decodes at least this many images while the model runs on the previous ones.
DECODE_CHUNK = 64
# One decoding thread on a 2-core machine: two, beside TensorFlow's own threads, oversubscribed the
# cores and made decode + model slower than decoding first and running the model after (measured in
# one process, 1,024 Fashion-MNIST files: 148 ms per 256 images with two, 100 ms with one; model alone 70).
DECODE_THREADS = 1 if (os.cpu_count() or 1) <= 2 else 2


@dataclass
class Embedder:
    model: keras.Model
    meta: dict[str, Any]
    path: Path
    # Traced once per Embedder (per process) with a [None, ...] signature: any batch size reuses them.
    _forward: Any = field(default=None, init=False, repr=False, compare=False)
    _forward_png: Any = field(default=None, init=False, repr=False, compare=False)

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
    def framing(self) -> Framing:
        """How this model frames images (ml.framing); a model from before framing: the whole image."""
        return Framing.from_dict(self.meta.get("framing"))

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

    def _model_fn(self, t: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._forward_flip_average(t) if self.flip_average else self.model(t, training=False)

    def _predict(self, x: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        if len(x) == 0:
            return {"embedding": np.zeros((0, self.dim), np.float32)}
        if self._forward is None:
            # A compiled graph, not eager layer-by-layer calls (about 1.5x slower on CPU), and not
            # predict() (which retraces for odd batch sizes): bench/indexing.py measures the difference.
            size = self.image_size
            self._forward = tf.function(
                self._model_fn, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)]
            )
        return self._batched(self._forward, np.asarray(x, np.float32), batch_size)

    @staticmethod
    def _batched(forward, x, batch_size: int) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(x), batch_size):
            part = forward(tf.convert_to_tensor(x[start : start + batch_size]))
            for key, value in part.items():
                out.setdefault(key, []).append(np.asarray(value, np.float32))
        return {key: np.concatenate(value) for key, value in out.items()}

    def _predict_png(self, files: list[bytes], batch_size: int) -> dict[str, np.ndarray]:
        """_predict for PNG files whose pixels are the model input (ml.preprocess.png_as_is),
        decoded inside the graph: no Python per image. Raises tf.errors.InvalidArgumentError
        when one of them does not decode (the caller then takes each through the contract)."""
        if self._forward_png is None:
            size = self.image_size

            def forward(data: tf.Tensor) -> dict[str, tf.Tensor]:
                pixels = tf.map_fn(
                    lambda one: tf.ensure_shape(tf.io.decode_png(one, channels=3), [size, size, 3]),
                    data,
                    fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
                )
                return self._model_fn(tf.cast(pixels, tf.float32))

            self._forward_png = tf.function(forward, input_signature=[tf.TensorSpec([None], tf.string)])
        return self._batched(self._forward_png, np.array(files, dtype=object), batch_size)

    def predict_arrays(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """(vectors [n, dim], class probabilities [n, classes] or None) for decoded images
        [n, h, w(, 1|3)] in [0, 255], framed and resized as in training (ml.preprocess)."""
        out = self._predict(arrays_to_input(images, self.image_size, self.framing), batch_size)
        return out["embedding"], out.get("probabilities")

    def embed_arrays(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float32 [n, dim] for decoded images [n, h, w(, 1|3)] in [0, 255]."""
        return self.predict_arrays(images, batch_size)[0]

    def embed_files(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 64, *, chunk: int | None = None
    ) -> tuple[np.ndarray, dict[int, str]]:
        """(vectors float32 [n, dim], failures {index: reason}). A missing, unreadable or corrupt
        file gets a zero row and an entry in failures (the reason catalog.images gives, as at
        import); the others are embedded. Any other error (in framing, the model, MemoryError) is
        raised: it is no fact about a file, and must not be recorded as one.

        Files are read and decoded `chunk` at a time (default: a quarter of batch_size, at least
        DECODE_CHUNK) in DECODE_THREADS threads (file reads and Pillow release the GIL), the next
        chunk while the model runs on this one (so does the model call). A PNG that is its own model
        input (ml.preprocess.png_as_is: a Fashion-MNIST-sized catalogue's every file) is only read
        there and decoded inside the model's graph, which gives the same pixels at a fraction of
        Pillow's cost per image; where one of those does not decode, each of them goes through the
        contract, which gives its reason."""
        from concurrent.futures import ThreadPoolExecutor

        paths = [os.fspath(p) for p in paths]
        size, framing = self.image_size, self.framing
        vectors = np.zeros((len(paths), self.dim), np.float32)
        failures: dict[int, str] = {}
        step = max(1, min(chunk or max(DECODE_CHUNK, batch_size // 4), batch_size))

        def contract(data: bytes) -> tuple[np.ndarray | None, str | None]:
            """(model input, None) or (None, the reason the file cannot be used). Only the file's
            decoding (InvalidImage: catalog.images gives every decoder error as one) is the file's
            fault; an error in framing or resizing, or MemoryError, is raised: the batch fails."""
            try:
                pixels = decode_bytes(data, size)
            except InvalidImage as exc:
                return None, _reason(exc)
            return model_input(pixels, size, framing), None

        def decode(indices: range) -> list[tuple[int, np.ndarray | bytes | None, str | None]]:
            # (index, model input, None), (index, PNG bytes for the graph, None) or (index, None, reason)
            out = []
            for i in indices:
                try:
                    with open(paths[i], "rb") as f:
                        data = f.read()
                except OSError as exc:  # missing, unreadable, a folder: the file's own failure reason
                    out.append((i, None, _reason(exc)))
                    continue
                out.append((i, data, None) if png_as_is(data, size, framing) else (i, *contract(data)))
            return out

        starts = list(range(0, len(paths), step))
        with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode") as pool:

            def submit(start: int) -> list:
                # One task per thread, not per file: a future per image costs as much as a small PNG.
                stop = min(start + step, len(paths))
                return [
                    pool.submit(decode, range(a, stop, DECODE_THREADS))
                    for a in range(start, min(start + DECODE_THREADS, stop))
                ]

            pending = submit(starts[0]) if starts else []
            for n in range(len(starts)):
                current, pending = pending, (submit(starts[n + 1]) if n + 1 < len(starts) else [])
                decoded = sorted((item for future in current for item in future.result()), key=lambda item: item[0])
                ok, inputs, png_ok, pngs = [], [], [], []
                for i, x, reason in decoded:
                    if reason is not None:
                        failures[i] = reason
                    elif isinstance(x, bytes):
                        png_ok.append(i)
                        pngs.append(x)
                    else:
                        ok.append(i)
                        inputs.append(x)
                if pngs:
                    try:
                        vectors[png_ok] = self._predict_png(pngs, batch_size)["embedding"]
                    except tf.errors.InvalidArgumentError:  # one of them is damaged: each the whole way
                        for i, data in zip(png_ok, pngs, strict=True):
                            x, reason = contract(data)
                            if reason is None:
                                ok.append(i)
                                inputs.append(x)
                            else:
                                failures[i] = reason
                if ok:
                    vectors[ok] = self._predict(np.stack(inputs), batch_size)["embedding"]
        return vectors, failures

    def embed_and_guess_bytes(self, data: bytes) -> tuple[np.ndarray, tuple[str, float] | None]:
        """Photo search: an uploaded file's vector and category guess, through the same decoding and
        framing as indexing (so a catalogue file uploaded as a photo lands on its own vector)."""
        out = self._predict(bytes_to_input(data, self.image_size, self.framing)[None], 1)
        return out["embedding"][0], (self._guess(out) if self.has_classifier_head else None)

    def embed_pil(self, img: Image.Image) -> np.ndarray:
        """float32 [dim] for one decoded PIL image."""
        return self._predict(model_input(np.asarray(img.convert("RGB")), self.image_size, self.framing)[None], 1)[
            "embedding"
        ][0]

    def guess_category(self, img: Image.Image) -> tuple[str, float] | None:
        """(label name, probability) of the most likely category, or None without a classifier head."""
        if not self.has_classifier_head:
            return None
        return self._guess(
            self._predict(model_input(np.asarray(img.convert("RGB")), self.image_size, self.framing)[None], 1)
        )

    def _guess(self, out: dict[str, np.ndarray]) -> tuple[str, float] | None:
        if "probabilities" not in out:
            return None
        probs = out["probabilities"][0]
        best = int(np.argmax(probs))
        return self.label_names[best], float(probs[best])


def _reason(exc: Exception) -> str:
    """A file's failure reason: InvalidImage's (a ValueError) as it is, any other error with its type."""
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
