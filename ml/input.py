"""tf.data input pipelines: image files (the catalogue) or in-memory uint8 arrays (the benchmark).

Both give batches of model input as defined in ml.preprocess (float32 RGB [0, 255]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ml.preprocess import arrays_to_input, decode_and_resize, file_to_array

AUTOTUNE = tf.data.AUTOTUNE


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


def balanced_order(labels: np.ndarray, classes_per_batch: int, per_class: int, n_batches: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Indices for n_batches class-balanced batches, flat: each run of P*K holds K images of P classes.

    Classes with fewer than 2 images cannot give a positive pair and are skipped; images of a class
    repeat only when it has fewer than K.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    usable = classes[counts >= 2]
    if len(usable) < 2:
        raise ValueError(
            "Triplet training needs at least 2 classes with 2 or more images each. "
            f"Received: {len(usable)} such classes"
        )
    p = min(classes_per_batch, len(usable))
    members = {c: np.flatnonzero(labels == c) for c in usable}
    out = np.empty((n_batches, p * per_class), np.int64)
    for b in range(n_batches):
        for j, c in enumerate(rng.choice(usable, size=p, replace=False)):
            m = members[c]
            out[b, j * per_class:(j + 1) * per_class] = rng.choice(m, size=per_class, replace=len(m) < per_class)
    return out.reshape(-1)


def augment_batch(images: tf.Tensor, *, seed: int | None = None, max_shift: float = 0.08,
                  max_brightness: float = 0.05) -> tf.Tensor:
    """Light, label-preserving augmentation of a batch [b, s, s, 3] in [0, 255]: random horizontal
    flip, a random shift up to max_shift of the size (zero fill), a brightness change up to
    max_brightness of the range."""
    gen = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.get_global_generator()
    b = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    flip = gen.uniform([b, 1, 1, 1]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    shift = tf.round(gen.uniform([b, 2], -max_shift, max_shift) * size)
    # Projective transform [1, 0, -dx, 0, 1, -dy, 0, 0] per image: an integer translation.
    ones, zeros = tf.ones([b, 1]), tf.zeros([b, 1])
    transforms = tf.concat([ones, zeros, -shift[:, :1], zeros, ones, -shift[:, 1:], zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT",
    )
    delta = gen.uniform([b, 1, 1, 1], -max_brightness, max_brightness) * 255.0
    return tf.clip_by_value(images + delta, 0.0, 255.0)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_path(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """TensorFlow decodes PNG (the bulk of a catalogue, fast, no GIL); everything else the catalogue
    accepts (JPEG incl. CMYK, WebP, GIF) goes through PIL, as inference does, so training sees the
    same pixels."""
    data = tf.io.read_file(path)

    def with_pil():
        array = tf.numpy_function(lambda p: file_to_array(p.decode(), image_size), [path], tf.float32)
        return tf.ensure_shape(array, [image_size, image_size, 3])

    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC)
    return tf.cond(is_png, lambda: decode_and_resize(data, image_size), with_pil)


def _finish(ds: tf.data.Dataset, *, augment: bool, target: str, seed: int) -> tf.data.Dataset:
    def to_xy(x, y):
        if augment:
            x = augment_batch(x)
        return (x, x) if target == "images" else (x, y)

    return ds.map(to_xy, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _element_dataset(source, labels, indices, image_size: int):
    """Dataset of (image, label) for the given indices: decoded files or sliced arrays."""
    labels = np.asarray(labels, np.int32)
    if isinstance(source, np.ndarray):
        table_x = tf.constant(source)
        table_y = tf.constant(labels)
        idx = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64)) if not isinstance(
            indices, tf.data.Dataset) else indices
        return idx.map(lambda i: (tf.gather(table_x, i), tf.gather(table_y, i))), True
    paths = tf.constant([str(p) for p in source])
    table_y = tf.constant(labels)
    idx = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64)) if not isinstance(
        indices, tf.data.Dataset) else indices
    return idx.map(
        lambda i: (_load_path(tf.gather(paths, i), image_size), tf.gather(table_y, i)),
        num_parallel_calls=AUTOTUNE,
    ), False


def make_dataset(source: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray, indices: np.ndarray, *,
                 image_size: int, batch_size: int, shuffle: bool, augment: bool, target: str = "labels",
                 seed: int = 0) -> tf.data.Dataset:
    """Batches of (image, label), or (image, image) with target="images", over `indices` of the
    source: a list of file paths (read and decoded in parallel) or a uint8 array [n, h, w(, c)]
    (converted per batch). The last partial batch is kept."""
    idx = np.asarray(indices, np.int64)
    ds = tf.data.Dataset.from_tensor_slices(idx)
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    elements, in_memory = _element_dataset(source, labels, ds, image_size)
    ds = elements.batch(batch_size)
    if in_memory:
        ds = ds.map(lambda x, y: (arrays_to_input(x, image_size), y), num_parallel_calls=AUTOTUNE)
    return _finish(ds, augment=augment, target=target, seed=seed)


def make_balanced_dataset(source: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray,
                          indices: np.ndarray, *, image_size: int, classes_per_batch: int, per_class: int,
                          augment: bool, seed: int = 0) -> tf.data.Dataset:
    """Endless class-balanced batches (P classes x K images) for triplet mining; use steps_per_epoch."""
    idx = np.asarray(indices, np.int64)
    sub_labels = np.asarray(labels)[idx]
    batch = min(classes_per_batch, len(np.unique(sub_labels))) * per_class

    def batches():
        rng = np.random.default_rng(seed)
        while True:
            yield idx[balanced_order(sub_labels, classes_per_batch, per_class, 64, rng)]

    order = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None], tf.int64)).unbatch()
    elements, in_memory = _element_dataset(source, labels, order, image_size)
    ds = elements.batch(batch, drop_remainder=True)
    if in_memory:
        ds = ds.map(lambda x, y: (arrays_to_input(x, image_size), y), num_parallel_calls=AUTOTUNE)
    return _finish(ds, augment=augment, target="labels", seed=seed)
