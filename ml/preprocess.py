"""The one image contract for models: file bytes -> pixels -> model input.

Training, indexing and photo search all go through here, so the same file gives the same model
input on every path (tests check it for EXIF-rotated JPEGs, transparent and palette PNGs, CMYK
JPEGs and 16-bit PNGs):

1. decode: catalog.images.read_image (first frame, EXIF orientation, transparency on white, 8-bit
   RGB), a JPEG decoded at reduced scale where the model's input is much smaller (`draft_size`);
2. frame: ml.framing (crop to the item, square, the catalogue's background colour and polarity),
   resized to the model's image_size;
3. float32 RGB [image_size, image_size, 3] in [0, 255]; models rescale inside themselves.

A version trained before framing existed has no framing in its metadata and gets the old rule
(the whole image, padded to a square with black).
"""

from __future__ import annotations

import os
import struct

import numpy as np

from catalog.images import read_image
from ml.framing import Framing, frame, frame_with_mask, work_size

__all__ = [
    "Framing",
    "arrays_to_input",
    "bytes_to_input",
    "decode",
    "draft_size",
    "file_to_input",
    "model_input",
    "png_as_is",
    "to_rgb",
]


def _check_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer. Received: image_size={image_size!r}")


def draft_size(image_size: int) -> int:
    """The smallest shorter side a decoded image needs for a model of this input size."""
    return work_size(image_size)


def decode(data: bytes, image_size: int) -> np.ndarray:
    """Image bytes -> uint8 RGB [h, w, 3]. Raises catalog.images.InvalidImage with the reason."""
    return np.asarray(read_image(data, draft=draft_size(image_size)).image)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [h, w], [h, w, 1] or [h, w, 3] -> uint8 RGB [h, w, 3] (arrays already decoded)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"An image must be [h, w], [h, w, 1] or [h, w, 3]. Received: shape={image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def model_input(rgb: np.ndarray, image_size: int, framing: Framing) -> np.ndarray:
    """Decoded pixels -> float32 [image_size, image_size, 3] in [0, 255]."""
    _check_size(image_size)
    return frame(to_rgb(rgb), image_size, framing).astype(np.float32)


def bytes_to_input(data: bytes, image_size: int, framing: Framing) -> np.ndarray:
    return model_input(decode(data, image_size), image_size, framing)


def file_to_input(path: str | os.PathLike, image_size: int, framing: Framing) -> np.ndarray:
    """An image file -> model input. Raises OSError (unreadable file) or InvalidImage."""
    with open(path, "rb") as f:
        return bytes_to_input(f.read(), image_size, framing)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that change nothing in the pixels read_image gives: Pillow applies no colour management
# (gAMA, cHRM, sRGB, iCCP, sBIT) and keeps resolution and time (pHYs, tIME) as metadata only.
# Anything else (tRNS transparency, a palette, eXIf or text that may hold an orientation) goes the
# whole way through read_image.
_PNG_NEUTRAL = frozenset({b"IHDR", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs", b"tIME"})


def png_as_is(data: bytes, image_size: int, framing: Framing) -> bool:
    """Whether the contract leaves this file's pixels as they are: an 8-bit grey or RGB PNG of
    image_size x image_size, with no transparency, palette, EXIF or text, for a model without
    framing. Its decoded pixels (grey repeated to RGB) are then the model input, which any PNG
    decoder gives alike, so indexing may decode such files inside TensorFlow's graph
    (ml.inference.Embedder.embed_files; tests compare it with read_image pixel for pixel). A
    Fashion-MNIST-sized catalogue is all such files. Reads only the chunk headers."""
    if framing.enabled or len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    width, height, depth, colour, _, _, _ = struct.unpack_from(">IIBBBBB", data, 16)
    if width != image_size or height != image_size or depth != 8 or colour not in (0, 2):
        return False
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind not in _PNG_NEUTRAL:
            return False
        if kind == b"IEND":
            return True
        at += 12 + length
    return False  # no IEND: a truncated file, for read_image to explain


def arrays_to_input(images: np.ndarray, image_size: int, framing: Framing) -> np.ndarray:
    """Decoded images [n, h, w(, 1|3)] (uint8, or floats in [0, 255]) -> float32 [n, s, s, 3]."""
    _check_size(image_size)
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(f"images must be [n, h, w], [n, h, w, 1] or [n, h, w, 3]. Received: shape={images.shape}")
    out = np.empty((len(images), image_size, image_size, 3), np.float32)
    for i, image in enumerate(images):
        out[i] = frame(to_rgb(image), image_size, framing)
    return out


def framed_with_mask(rgb: np.ndarray, image_size: int, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [s, s, 3], uint8 item mask [s, s]) for training's decode-once cache (ml.input)."""
    image, mask = frame_with_mask(to_rgb(rgb), image_size, framing)
    return image, np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)
