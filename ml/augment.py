"""Augmentations that keep colour: the views instance training learns to match.

Everything works on a batch [b, s, s, 3] of framed images in [0, 255] (ml.framing) with their item
masks [b, s, s] in [0, 1]. What a view may change is how a photo was taken: the background behind
the item, zoom, position, rotation, mirror, brightness and contrast, a little blur. It never shifts
hue or drops colour (SimCLR's colour jitter and grey-scale would teach the model to ignore colour,
which is what a shop's "looks like this" is about).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class ViewAugment:
    """Ranges, each sampled uniformly per image. Shares are probabilities."""

    background_share: float = 0.5  # put the item on another plain background
    zoom: tuple[float, float] = (0.8, 1.15)
    shift: float = 0.08  # of the side, either way
    rotation: float = 15.0  # degrees, either way
    flip: bool = True
    brightness: tuple[float, float] = (0.55, 1.4)  # down to a photo 40% darker than the catalogue, on a dark backdrop
    contrast: tuple[float, float] = (0.85, 1.15)
    blur_share: float = 0.0
    # Put the item on a procedural surface (stripes and grain, a weave, tiles, smooth noise) instead
    # of its backdrop, after the geometric change: what a crop of a shopper's photo shows around it.
    scene_share: float = 0.0


class StatelessRandom:
    """uniform(shape, low, high) from a seed [2]: each call a fresh, reproducible stream, so batches
    can be augmented in parallel and a seed still repeats a run."""

    def __init__(self, seed: tf.Tensor):
        self.seed = tf.cast(seed, tf.int64)
        self.calls = 0

    def uniform(self, shape, minval=0.0, maxval=1.0) -> tf.Tensor:
        self.calls += 1
        seed = tf.random.experimental.stateless_fold_in(self.seed, self.calls)
        return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval)


def augment_views(
    images: tf.Tensor, masks: tf.Tensor, background: tf.Tensor, spec: ViewAugment, gen: StatelessRandom
) -> tf.Tensor:
    """One random view of each image. background: the catalogue's background colour [3] (float)."""
    images = tf.cast(images, tf.float32)
    masks = tf.cast(masks, tf.float32)[..., tf.newaxis]
    b = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    background = tf.reshape(tf.cast(background, tf.float32), [1, 1, 1, 3])

    # Light: brightness (gain) and contrast about the item's mean, on the item only: framing gives
    # every background the catalogue's colour, so at query time it is the item whose exposure varies
    # (where framing found no background, the mask is the whole image). No hue change.
    gain = gen.uniform([b, 1, 1, 1], *spec.brightness)
    contrast = gen.uniform([b, 1, 1, 1], *spec.contrast)
    area = tf.reduce_sum(masks, axis=[1, 2, 3], keepdims=True) * 3.0 + 1e-3
    mean = tf.reduce_sum(images * masks, axis=[1, 2, 3], keepdims=True) / area
    lit = ((images - mean) * contrast + mean) * gain
    images = lit * masks + images * (1.0 - masks)

    # Another background: a plain colour, light or dark, grey or tinted (hue of the background only).
    swap = gen.uniform([b, 1, 1, 1]) < spec.background_share
    level = gen.uniform([b, 1, 1, 1], 0.0, 255.0)
    tint = gen.uniform([b, 1, 1, 3], -20.0, 20.0)
    new_bg = tf.clip_by_value(level + tint, 0.0, 255.0)
    fill = tf.where(swap, new_bg, tf.broadcast_to(background, tf.shape(new_bg)))
    images = tf.where(swap, images * masks + new_bg * (1.0 - masks), images)

    # Zoom, rotation, shift and mirror in one projective transform per image, about the centre.
    zoom = gen.uniform([b], *spec.zoom)
    angle = gen.uniform([b], -spec.rotation, spec.rotation) * (math.pi / 180.0)
    mirror = tf.where(gen.uniform([b]) < (0.5 if spec.flip else 0.0), -1.0, 1.0)
    dx = gen.uniform([b], -spec.shift, spec.shift) * size
    dy = gen.uniform([b], -spec.shift, spec.shift) * size
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    c = (size - 1.0) / 2.0
    # output (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    a2 = c - a0 * (c + dx) - a1 * (c + dy)
    b2 = c - b0 * (c + dx) - b1 * (c + dy)
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    shifted = tf.raw_ops.ImageProjectiveTransformV3(
        images=images - fill,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    images = shifted + fill
    if spec.scene_share > 0:
        moved = tf.raw_ops.ImageProjectiveTransformV3(
            images=masks,
            transforms=transforms,
            output_shape=tf.shape(images)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        scene = gen.uniform([b, 1, 1, 1]) < spec.scene_share
        surface = scene_backgrounds(b, tf.shape(images)[1], gen)
        images = tf.where(scene, images * moved + surface * (1.0 - moved), images)

    if spec.blur_share > 0:
        kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0
        k2 = tf.tile((kernel[:, None] * kernel[None, :])[:, :, None, None], [1, 1, 3, 1])
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        blurred = tf.nn.depthwise_conv2d(padded, k2, [1, 1, 1, 1], "VALID")
        images = tf.where(gen.uniform([b, 1, 1, 1]) < spec.blur_share, blurred, images)
    return tf.clip_by_value(images, 0.0, 255.0)


def scene_backgrounds(b, size, gen: StatelessRandom) -> tf.Tensor:
    """b procedural surfaces [b, size, size, 3] in [0, 255]: wood-like stripes with a warp, a
    weave, tiles or checks, smooth noise; two tones of a random colour, light to dark, fine grain."""
    s = tf.cast(size, tf.float32)
    ramp = tf.range(s) / s
    y, x = tf.meshgrid(ramp, ramp, indexing="ij")
    theta = gen.uniform([b, 1, 1], 0.0, math.pi)
    u = x[None] * tf.cos(theta) - y[None] * tf.sin(theta)
    v = x[None] * tf.sin(theta) + y[None] * tf.cos(theta)

    def smooth(cells):
        return tf.image.resize(gen.uniform([b, cells, cells, 1], -1.0, 1.0), [size, size], method="bicubic")[..., 0]

    two_pi = 2.0 * math.pi
    stripes = 0.5 + 0.5 * tf.sin(two_pi * (u * gen.uniform([b, 1, 1], 3.0, 24.0) + 0.2 * smooth(5)))
    f = gen.uniform([b, 1, 1], 8.0, 32.0)
    weave = 0.25 * (2.0 + tf.sin(two_pi * u * f) + tf.sin(two_pi * v * f))
    n = gen.uniform([b, 1, 1], 2.0, 8.0)
    tiles = tf.math.floormod(tf.floor(u * n) + tf.floor(v * n), 2.0)
    noise = tf.clip_by_value(0.5 + 0.35 * (smooth(4) + 0.5 * smooth(12)), 0.0, 1.0)
    kind = tf.floor(gen.uniform([b, 1, 1], 0.0, 4.0))
    t = tf.where(kind < 1, stripes, tf.where(kind < 2, weave, tf.where(kind < 3, tiles, noise)))[..., None]
    level = gen.uniform([b, 1, 1, 1], 20.0, 235.0)
    first = tf.clip_by_value(level + gen.uniform([b, 1, 1, 3], -35.0, 35.0), 0.0, 255.0)
    second = tf.clip_by_value(
        first * gen.uniform([b, 1, 1, 1], 0.45, 1.0) + gen.uniform([b, 1, 1, 3], -20.0, 20.0), 0.0, 255.0
    )
    grain = gen.uniform([b, size, size, 1], -6.0, 6.0)
    return tf.clip_by_value(first * (1.0 - t) + second * t + grain, 0.0, 255.0)
