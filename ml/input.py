"""Training input: every image decoded and framed once, then tf.data batches from that cache.

`decode_once` turns the catalogue's files (or in-memory arrays) into framed uint8 images at the
model's input size plus their item masks (ml.preprocess, the same contract as indexing and photo
search), in memory when they fit and in a memory-mapped file under the run's folder when they do
not, so that epochs after the first cost the model, not JPEG decoding. Augmentation runs on the
cached arrays, inside the tf.data pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from catalog.images import InvalidImage
from ml.augment import StatelessRandom, ViewAugment, augment_views
from ml.budget import cache_bytes
from ml.preprocess import Framing, decode, framed_with_mask

logger = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
IN_MEMORY_BYTES = 2 * 2**30  # a cache larger than this is memory-mapped from the run's folder


@dataclass
class FramedImages:
    """The decode-once cache: images uint8 [n, s, s, 3], item masks uint8 [n, s, s] (255 = item)."""

    images: np.ndarray
    masks: np.ndarray
    framing: Framing
    failures: dict[int, str] = field(default_factory=dict)  # index -> why the file could not be used

    @property
    def background(self) -> tuple[int, int, int]:
        """The colour the items stand on (what augmentation fills with)."""
        return self.framing.background or (0, 0, 0)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def usable(self) -> np.ndarray:
        ok = np.ones(len(self.images), bool)
        ok[list(self.failures)] = False
        return ok


def _cache_key(source: Sequence[str] | np.ndarray, image_size: int, framing: Framing) -> str:
    h = hashlib.sha256(f"{image_size}|{framing.to_dict()}".encode())
    if isinstance(source, np.ndarray):
        h.update(np.ascontiguousarray(source).data)
    else:
        for path in source:
            h.update(os.fspath(path).encode() + b"\0")
    return h.hexdigest()[:20]


def decode_once(
    source: Sequence[str] | np.ndarray,
    *,
    image_size: int,
    framing: Framing,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    in_memory_bytes: int | None = None,
) -> FramedImages:
    """Decode and frame every image of `source` (file paths, or uint8 arrays [n, h, w(, c)]) once.

    A file that cannot be read or decoded is a failure with its reason (InvalidImage's, or the
    OS error); its slot stays black and `usable` excludes it. With cache_dir, a cache larger than
    in_memory_bytes (default IN_MEMORY_BYTES) is written there as memory-mapped files (and reused by a
    resumed run with the same files, size and framing).
    """
    limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
    n = len(source)
    shape = (n, image_size, image_size)
    nbytes = cache_bytes(n, image_size)
    key = _cache_key(source, image_size, framing)
    if cache_dir is not None and nbytes > limit:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        done = folder / f"{key}.done"
        mode = "r" if done.exists() else "w+"
        images = np.lib.format.open_memmap(folder / f"{key}-images.npy", mode=mode, dtype=np.uint8, shape=(*shape, 3))
        masks = np.lib.format.open_memmap(folder / f"{key}-masks.npy", mode=mode, dtype=np.uint8, shape=shape)
        if mode == "r":
            import json

            failures = {int(k): v for k, v in json.loads(done.read_text()).items()}
            return FramedImages(images, masks, framing, failures)
    else:
        done = None
        images = np.zeros((*shape, 3), np.uint8)
        masks = np.zeros(shape, np.uint8)

    def one(i: int) -> str | None:
        try:
            if isinstance(source, np.ndarray):
                rgb = source[i]
            else:
                with open(source[i], "rb") as f:
                    rgb = decode(f.read(), image_size)
            images[i], masks[i] = framed_with_mask(rgb, image_size, framing)
        except (InvalidImage, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}" if not isinstance(exc, InvalidImage) else str(exc)
        return None

    failures: dict[int, str] = {}
    step = max(1, n // 20)
    # Pillow decodes and resizes without the GIL, so threads overlap the files.
    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        for i, reason in enumerate(pool.map(one, range(n), chunksize=64)):
            if reason is not None:
                failures[i] = reason
            if progress and ((i + 1) % step == 0 or i + 1 == n):
                progress(i + 1, n)
    if failures:
        logger.warning(
            "%d of %d images could not be decoded and are left out of training, e.g. %s",
            len(failures),
            n,
            next(iter(failures.values())),
        )
    if done is not None:
        import json

        images.flush()
        masks.flush()
        done.write_text(json.dumps({str(k): v for k, v in failures.items()}))
    return FramedImages(images, masks, framing, failures)


def split_by_group(groups: Sequence, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, eval indices), splitting whole groups (product ids) so none is on both sides.

    About eval_fraction of the groups go to eval; with eval_fraction 0 (or one group) all train.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1). Received: eval_fraction={eval_fraction}")
    groups = np.asarray(groups)
    unique, inverse = np.unique(groups, return_inverse=True)
    n_eval = int(round(len(unique) * eval_fraction))
    if eval_fraction > 0 and len(unique) > 1:
        n_eval = min(max(n_eval, 1), len(unique) - 1)
    rng = np.random.default_rng(seed)
    eval_groups = np.zeros(len(unique), bool)
    eval_groups[rng.permutation(len(unique))[:n_eval]] = True
    is_eval = eval_groups[inverse.reshape(-1)]
    return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)


def balanced_order(
    labels: np.ndarray,
    classes_per_batch: int,
    per_class: int,
    n_batches: int,
    rng: np.random.Generator,
    *,
    min_per_class: int = 2,
) -> np.ndarray:
    """Indices for n_batches class-balanced batches, flat: each run of P*K holds K images of P classes.

    Classes with fewer than min_per_class images are skipped (2: a triplet needs a positive; 1 when
    augmented views of one photo are the positives); images of a class repeat only when it has
    fewer than K.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    usable = classes[counts >= min_per_class]
    if len(usable) < 2:
        raise ValueError(
            f"Triplet training needs at least 2 classes with {min_per_class} or more images each. "
            f"Received: {len(usable)} such classes"
        )
    p = min(classes_per_batch, len(usable))
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], usable)
    ends = np.searchsorted(labels[order], usable, side="right")
    out = np.empty((n_batches, p * per_class), np.int64)
    for b in range(n_batches):
        for j, c in enumerate(rng.choice(len(usable), size=p, replace=False)):
            m = order[starts[c] : ends[c]]
            out[b, j * per_class : (j + 1) * per_class] = rng.choice(m, size=per_class, replace=len(m) < per_class)
    return out.reshape(-1)


def augment_batch(
    images: tf.Tensor, gen: StatelessRandom, *, max_shift: float = 0.08, max_brightness: float = 0.05
) -> tf.Tensor:
    """Light, label-preserving augmentation of a batch [b, s, s, 3] in [0, 255] (the classifier's):
    random horizontal flip, a random shift up to max_shift of the size (zero fill), a brightness
    change up to max_brightness of the range. `gen` is seeded by the run, so runs repeat."""
    b = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    flip = gen.uniform([b, 1, 1, 1]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    shift = tf.round(gen.uniform([b, 2], -max_shift, max_shift) * size)
    # Projective transform [1, 0, -dx, 0, 1, -dy, 0, 0] per image: an integer translation.
    ones, zeros = tf.ones([b, 1]), tf.zeros([b, 1])
    transforms = tf.concat([ones, zeros, -shift[:, :1], zeros, ones, -shift[:, 1:], zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    delta = gen.uniform([b, 1, 1, 1], -max_brightness, max_brightness) * 255.0
    return tf.clip_by_value(images + delta, 0.0, 255.0)


@dataclass(frozen=True)
class Augment:
    """What a training batch goes through: None, the classifier's light augmentation ("light"),
    or views that keep colour (a ViewAugment, with the catalogue's background colour)."""

    kind: str | None = None  # None | "light" | "views"
    views: ViewAugment = ViewAugment()
    background: tuple[int, int, int] = (255, 255, 255)


def _tables(framed: FramedImages):
    """gather(indices) -> (images float32, masks float32 in [0, 1]) from memory or a memory map."""
    if isinstance(framed.images, np.memmap) or framed.images.nbytes > IN_MEMORY_BYTES:

        def gather(idx):
            def read(i):
                # Read each row once, in file order (sequential on disk), then put the rows back in
                # the batch's order: the labels are gathered in that order.
                rows, order = np.unique(i, return_inverse=True)
                order = order.reshape(-1)
                x = framed.images[rows][order].astype(np.float32)
                return x, framed.masks[rows][order].astype(np.float32) / 255.0

            x, m = tf.numpy_function(read, [idx], [tf.float32, tf.float32])
            s = framed.images.shape[1]
            return tf.ensure_shape(x, [None, s, s, 3]), tf.ensure_shape(m, [None, s, s])

        return gather
    images, masks = tf.constant(framed.images), tf.constant(framed.masks)
    return lambda idx: (tf.cast(tf.gather(images, idx), tf.float32), tf.cast(tf.gather(masks, idx), tf.float32) / 255.0)


def _batches(
    framed: FramedImages,
    targets: dict[str, np.ndarray] | str,
    index_batches: tf.data.Dataset,
    augment: Augment,
    seed: int,
) -> tf.data.Dataset:
    gather = _tables(framed)
    tables = {} if isinstance(targets, str) else {k: tf.constant(np.asarray(v, np.int32)) for k, v in targets.items()}
    background = tf.constant(augment.background, tf.float32)

    def load(step, idx):
        gen = StatelessRandom(tf.stack([tf.constant(seed, tf.int64), step]))
        x, m = gather(idx)
        if augment.kind == "light":
            x = augment_batch(x, gen)
        elif augment.kind == "views":
            x = augment_views(x, m, background, augment.views, gen)
        if targets == "images":
            return x, x
        return x, {k: tf.gather(t, idx) for k, t in tables.items()}

    # Each batch's randomness comes from (seed, batch number): parallel, and a seed repeats a run.
    return index_batches.enumerate().map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def make_dataset(
    framed: FramedImages,
    targets: dict[str, np.ndarray] | str,
    indices: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    augment: Augment = Augment(),
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches over `indices` of (image, {output: label}) or, with targets="images", (image, image).
    Shuffled each epoch when asked (seeded); the last partial batch is kept."""
    idx = np.asarray(indices, np.int64)
    ds = tf.data.Dataset.from_tensor_slices(idx)
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    return _batches(framed, targets, ds.batch(batch_size), augment, seed)


def make_balanced_dataset(
    framed: FramedImages,
    targets: dict[str, np.ndarray],
    balance_by: np.ndarray,
    indices: np.ndarray,
    *,
    classes_per_batch: int,
    per_class: int,
    augment: Augment,
    seed: int = 0,
    min_per_class: int = 2,
) -> tf.data.Dataset:
    """Endless balanced batches (P classes of balance_by x K images each; use steps_per_epoch)."""
    idx = np.asarray(indices, np.int64)
    sub = np.asarray(balance_by)[idx]

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            order = idx[balanced_order(sub, classes_per_batch, per_class, 64, rng, min_per_class=min_per_class)]
            yield from order.reshape(64, -1)

    ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None], tf.int64))
    return _batches(framed, targets, ds, augment, seed)
