"""The one preprocessing contract, shared by training and inference.

Any image (bytes, PIL image, uint8/float array; grayscale, RGB or RGBA) becomes a float32 RGB array
[image_size, image_size, 3] with values in [0, 255]: resized so its longer side is image_size (aspect
kept, antialiased bilinear) and zero-padded to a centred square. Models rescale internally (a
Rescaling layer), so callers never scale pixels themselves.

The tf.data path (`decode_and_resize`) and the PIL path (`pil_to_array`) share `resize_and_pad`,
so the same image gives the same numbers either way.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import tensorflow as tf
from PIL import Image


def _check_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer. Received: image_size={image_size!r}")


def resize_and_pad(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """[h, w, 3] (any dtype) -> float32 [image_size, image_size, 3] in [0, 255]."""
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    scale = tf.cast(image_size, tf.float32) / tf.cast(tf.maximum(h, w), tf.float32)
    new_h = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32))
    resized = tf.cond(
        tf.logical_and(tf.equal(new_h, h), tf.equal(new_w, w)),
        lambda: image,
        lambda: tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True),
    )
    resized = tf.clip_by_value(resized, 0.0, 255.0)
    top = (image_size - new_h) // 2
    left = (image_size - new_w) // 2
    padded = tf.image.pad_to_bounding_box(resized, top, left, image_size, image_size)
    return tf.ensure_shape(padded, [image_size, image_size, 3])


def decode_and_resize(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded image bytes (PNG/JPEG/GIF/BMP scalar string tensor) -> model input. For tf.data."""
    _check_size(image_size)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return resize_and_pad(image, image_size)


def _pil_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float grayscale: scale to 8 bits as decode_image would.
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr / (257.0 if img.mode.startswith("I;16") else 1.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def pil_to_array(img: Image.Image, image_size: int) -> np.ndarray:
    """PIL image -> float32 [image_size, image_size, 3] in [0, 255] (same numbers as decode_and_resize)."""
    _check_size(image_size)
    return resize_and_pad(tf.constant(_pil_rgb(img)), image_size).numpy()


def pil_batch(images: Iterable[Image.Image], image_size: int) -> np.ndarray:
    """Several PIL images -> float32 [n, image_size, image_size, 3]."""
    arrays = [pil_to_array(img, image_size) for img in images]
    if not arrays:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return np.stack(arrays)


def bytes_to_array(data: bytes, image_size: int) -> np.ndarray:
    """Encoded image bytes -> model input, with TensorFlow's decoder (as in training)."""
    return decode_and_resize(tf.constant(data), image_size).numpy()


def file_to_array(path: str, image_size: int) -> np.ndarray:
    """An image file -> model input, decoded with PIL: for what TensorFlow's decoder cannot read
    (WebP, CMYK or progressive-CMYK JPEG, ...). The first frame; same numbers as pil_to_array.
    Raises OSError/ValueError (PIL's own) for a missing, corrupt or over-large file."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.seek(0)
            img.load()
            return pil_to_array(img, image_size)


def open_image(data: bytes) -> Image.Image:
    """Decode bytes with PIL, fully (so a truncated file fails here, not later)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def arrays_to_input(images: np.ndarray | tf.Tensor, image_size: int) -> tf.Tensor:
    """A batch of same-sized images [n, h, w] or [n, h, w, 1|3] (uint8 or [0, 255] floats) -> model input.

    Works on tensors too, so tf.data pipelines over in-memory arrays apply it per batch.
    """
    _check_size(image_size)
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., tf.newaxis]
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be [n, h, w], [n, h, w, 1] or [n, h, w, 3]. Received: shape={tuple(images.shape)}"
        )
    if images.shape[-1] == 1:
        images = tf.repeat(images, 3, axis=-1)
    h, w = images.shape[1], images.shape[2]
    if h == image_size and w == image_size:
        return tf.cast(images, tf.float32)
    return tf.map_fn(
        lambda im: resize_and_pad(im, image_size),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
