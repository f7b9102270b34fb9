"""Scenes: catalogue items cut out of their packshots and put on the kind of surface people photograph on.

A packshot on a plain background gives its item's mask for free (ml.framing). `composite()` pastes
one or more such cut-outs onto a procedural scene (wood grain, woven fabric, tiles, smooth noise,
gradients, plain colours), with non-product props (flat or shaded blobs, bars, rings: the mugs,
phones and books of a real photo) as distractors, a cast shadow under each item, and then what a
phone camera adds: a colour cast, a brightness change, blur, sensor noise and JPEG. Items land at
any position and rotation, at 0.2-0.8 of the frame. Each composite knows the exact mask and box
of every catalogue item in it, which is what the localiser (ml.localiser) learns from.

Nothing here is tuned to one image generator: every ingredient is drawn from wide ranges, so a
model that learns from it has to learn "an item like the catalogue's, on anything", not a style.
Deterministic under a seed (NumPy's Generator and Pillow only; no TensorFlow).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

TEXTURES = ("wood", "fabric", "tiles", "noise", "gradient", "plain")
MIN_CUTOUT_SHARE = 0.03  # a cut-out's mask covers at least this share of its packshot (less: no item found)
MAX_CUTOUT_SHARE = 0.97  # and at most this (more: framing found no background, the "mask" is the whole photo)
MASK_LEVEL = 0.5  # a pixel belongs to an item where its (soft) mask is above this


@dataclass(frozen=True)
class SceneSpec:
    """Ranges, each sampled uniformly per composite. Shares are probabilities."""

    size: int = 96  # composites are size x size
    scale: tuple[float, float] = (0.2, 0.8)  # the main item's longer side over the frame's side
    rotation: float = 180.0  # degrees, either way
    extra_items: tuple[int, int] = (0, 2)  # other catalogue items in the frame (each one a box)
    props: tuple[int, int] = (0, 3)  # non-product distractors (not boxes)
    shadow_share: float = 0.6
    cast: float = 0.15  # per-channel gain of the colour cast, either way
    brightness: tuple[float, float] = (0.6, 1.3)
    blur_share: float = 0.5
    max_blur: float = 1.2  # Gaussian radius, as a share of size / 96 pixels
    noise: tuple[float, float] = (0.0, 8.0)  # sensor noise sigma (8-bit levels)
    jpeg_share: float = 0.6
    jpeg_quality: tuple[int, int] = (35, 92)
    empty_share: float = 0.05  # composites with no item at all (a table, a wall): the localiser must say so


@dataclass(frozen=True)
class Cutout:
    """An item cut out of its packshot: RGB uint8 [h, w, 3] and its mask float32 [h, w] in [0, 1],
    cropped to the mask's box."""

    rgb: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Composite:
    image: np.ndarray  # uint8 [size, size, 3]
    mask: np.ndarray  # uint8 [size, size], 1 where a catalogue item is visible
    boxes: list[tuple[int, int, int, int]]  # (x, y, w, h) of each visible item, the main item first
    sources: list[int]  # the cut-out index of each box


def cutout(rgb: np.ndarray, mask: np.ndarray) -> Cutout | None:
    """The item of a framed packshot (its mask from ml.framing, in [0, 1] or 0-255), or None when
    the mask does not describe an item (nearly empty, or the whole photo)."""
    m = np.asarray(mask, np.float32)
    if m.max() > 1.0:
        m = m / 255.0
    solid = m > MASK_LEVEL
    share = float(solid.mean())
    if share < MIN_CUTOUT_SHARE or share > MAX_CUTOUT_SHARE:
        return None
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Cutout(
        np.ascontiguousarray(rgb[top:bottom, left:right, :3], np.uint8), np.ascontiguousarray(m[top:bottom, left:right])
    )


def cutouts(images: np.ndarray, masks: np.ndarray) -> tuple[list[Cutout], list[int]]:
    """The usable cut-outs of a batch of framed packshots and the index of each one's image."""
    out, index = [], []
    for i, (rgb, mask) in enumerate(zip(images, masks)):
        c = cutout(rgb, mask)
        if c is not None:
            out.append(c)
            index.append(i)
    return out, index


# --- scenes ---------------------------------------------------------------------------------------


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A surface colour: anything from near-black to near-white, mostly muted, sometimes saturated."""
    base = rng.uniform(20, 235)
    spread = rng.choice([10.0, 30.0, 70.0], p=[0.4, 0.4, 0.2])
    return np.clip(base + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [size, size] in about [-1, 1]: random values on a cells x cells grid, bicubic-upscaled."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.Resampling.BICUBIC), np.float32)


def _coords(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c, s = math.cos(angle), math.sin(angle)
    return x * c - y * s, x * s + y * c


def texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural surface, float32 [size, size, 3] in [0, 255]."""
    a, b = _colour(rng), _colour(rng)
    u, v = _coords(size, rng.uniform(0, math.pi))
    if kind == "wood":
        warp = _smooth_noise(size, int(rng.integers(3, 7)), rng) * rng.uniform(0.5, 2.0)
        rings = rng.uniform(6, 30)
        t = 0.5 + 0.5 * np.sin((u + 0.08 * warp) * rings * 2 * math.pi + warp * 2)
        t = t ** rng.uniform(0.5, 3.0)
        fine = _smooth_noise(size, max(4, size // 3), rng) * 0.15
        t = np.clip(t + fine, 0, 1)
        b = a * rng.uniform(0.45, 0.85)  # grain: a darker tone of the same wood
    elif kind == "fabric":
        period = rng.uniform(2.5, 9.0) * size / 96
        warp_threads = 0.5 + 0.5 * np.sin(u * size / period * 2 * math.pi)
        weft_threads = 0.5 + 0.5 * np.sin(v * size / period * 2 * math.pi)
        t = 0.5 * warp_threads + 0.5 * weft_threads
        if rng.uniform() < 0.4:  # a woven check or stripe in a second colour
            t = 0.6 * t + 0.4 * (np.sin(u * rng.uniform(2, 8) * 2 * math.pi) > 0)
        t = np.clip(t + _smooth_noise(size, max(4, size // 4), rng) * 0.1, 0, 1)
        if rng.uniform() < 0.6:
            b = a * rng.uniform(0.7, 0.95)
    elif kind == "tiles":
        n = rng.uniform(2, 9)
        fu, fv = (u * n) % 1.0, (v * n) % 1.0
        grout = rng.uniform(0.03, 0.1)
        line = (fu < grout) | (fv < grout)
        per_tile = _smooth_noise(size, max(3, int(n * 3)), rng) * 0.3
        t = np.where(line, 1.0, np.clip(0.15 + per_tile, 0, 0.6))
        if rng.uniform() < 0.3:  # checkerboard of two tile colours
            t = np.where(line, 1.0, ((np.floor(u * n) + np.floor(v * n)) % 2) * 0.8)
    elif kind == "noise":
        t = np.zeros((size, size), np.float32)
        amp = 1.0
        for cells in (3, 6, 12, 24, 48):
            if cells > size:
                break
            t += amp * _smooth_noise(size, cells, rng)
            amp *= rng.uniform(0.4, 0.8)
        t = np.clip(0.5 + 0.5 * t / 1.8, 0, 1)
    elif kind == "gradient":
        t = np.clip(u * rng.uniform(0.5, 1.5) + rng.uniform(-0.5, 0.3), 0, 1)
    elif kind == "plain":
        t = np.zeros((size, size), np.float32)
    else:
        raise ValueError(f"kind must be one of {TEXTURES}. Received: kind={kind!r}")
    out = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return np.clip(out, 0, 255).astype(np.float32)


def _prop(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A non-product distractor: (rgb float32 [s, s, 3], mask float32 [s, s]) drawn at size s."""
    s = max(4, size)
    mask_img = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask_img)
    kind = rng.choice(["ellipse", "rect", "bar", "ring", "polygon"])
    w, h = s * rng.uniform(0.3, 1.0), s * rng.uniform(0.3, 1.0)
    x0, y0 = (s - w) / 2, (s - h) / 2
    if kind == "ellipse":
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=255)
    elif kind == "rect":
        draw.rounded_rectangle([x0, y0, x0 + w, y0 + h], radius=int(min(w, h) * rng.uniform(0, 0.3)), fill=255)
    elif kind == "bar":
        t = s * rng.uniform(0.06, 0.18)
        draw.rounded_rectangle([0, s / 2 - t / 2, s - 1, s / 2 + t / 2], radius=int(t / 3), fill=255)
    elif kind == "ring":
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=255)
        k = rng.uniform(0.15, 0.35)
        draw.ellipse([x0 + w * k, y0 + h * k, x0 + w * (1 - k), y0 + h * (1 - k)], fill=0)
    else:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.25, 0.5, n) * s
        draw.polygon([(s / 2 + r * math.cos(t), s / 2 + r * math.sin(t)) for r, t in zip(radii, angles)], fill=255)
    mask = np.asarray(mask_img, np.float32) / 255.0
    colour = _colour(rng)
    # Shaded (a light from one side) or flat, sometimes with a face of another colour (a screen, a label).
    u, _ = _coords(s, rng.uniform(0, 2 * math.pi))
    shade = 1.0 + rng.uniform(0, 0.5) * (u - u.mean())
    rgb = colour[None, None, :] * shade[..., None]
    if rng.uniform() < 0.4:
        inner = np.zeros((s, s), np.float32)
        inner[int(s * 0.3) : int(s * 0.7), int(s * 0.3) : int(s * 0.7)] = 1
        rgb = rgb * (1 - inner[..., None]) + _colour(rng)[None, None, :] * inner[..., None]
    return np.clip(rgb, 0, 255).astype(np.float32), mask


def _place(canvas: np.ndarray, rgb: np.ndarray, mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """Alpha-blend rgb (with mask) onto canvas at (x, y), clipped to the canvas; returns the mask
    as placed on a canvas-sized array."""
    H, W = canvas.shape[:2]
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    placed = np.zeros((H, W), np.float32)
    if x1 <= x0 or y1 <= y0:
        return placed
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    canvas[y0:y1, x0:x1] = (
        canvas[y0:y1, x0:x1] * (1 - m[..., None]) + rgb[y0 - y : y1 - y, x0 - x : x1 - x] * m[..., None]
    )
    placed[y0:y1, x0:x1] = m
    return placed


def _transform(
    rgb: np.ndarray, mask: np.ndarray, side: float, angle: float, mirror: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scale a cut-out so its longer side is `side` pixels, mirror, rotate (the frame grows to fit)."""
    h, w = mask.shape
    k = side / max(h, w)
    size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    m = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8), "L").resize(size, Image.Resampling.BILINEAR)
    if mirror:
        img, m = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), m.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        m = m.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    return np.asarray(img, np.float32), np.asarray(m, np.float32) / 255.0


def _shadow(canvas: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Darken the surface under a blurred, offset copy of an item's placed mask (in place)."""
    size = canvas.shape[0]
    dx, dy = (int(v) for v in rng.integers(-size // 16, size // 16 + 1, 2))
    shifted = np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    blur = rng.uniform(1.0, 4.0) * size / 96
    soft = (
        np.asarray(
            Image.fromarray((shifted * 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(blur)), np.float32
        )
        / 255.0
    )
    canvas *= (1.0 - rng.uniform(0.2, 0.55) * soft)[..., None]


def _camera(image: np.ndarray, spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Light and sensor: colour cast, brightness, blur, noise, JPEG. float32 in, uint8 out."""
    gain = rng.uniform(*spec.brightness) * (1.0 + rng.uniform(-spec.cast, spec.cast, 3))
    image = image * gain[None, None, :].astype(np.float32)
    img = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8))
    if rng.uniform() < spec.blur_share:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, spec.max_blur) * spec.size / 96))
    out = np.asarray(img, np.float32)
    sigma = rng.uniform(*spec.noise)
    if sigma > 0:
        out = out + rng.normal(0, sigma, out.shape).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if rng.uniform() < spec.jpeg_share:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(*spec.jpeg_quality)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    solid = mask > MASK_LEVEL
    if not solid.any():
        return None
    rows, cols = np.flatnonzero(solid.any(axis=1)), np.flatnonzero(solid.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] + 1 - cols[0]), int(rows[-1] + 1 - rows[0])


def composite(
    items: list[Cutout], main: int, rng: np.random.Generator, spec: SceneSpec = SceneSpec(), empty: bool | None = None
) -> Composite:
    """One scene with items[main] in front and a few other items of `items` and props behind it.

    empty: no item at all (None: drawn with spec.empty_share)."""
    size = spec.size
    canvas = texture(str(rng.choice(TEXTURES)), size, rng)
    if empty is None:
        empty = bool(rng.uniform() < spec.empty_share)
    for _ in range(int(rng.integers(spec.props[0], spec.props[1] + 1))):
        side = int(size * rng.uniform(0.1, 0.45))
        rgb, mask = _prop(side, rng)
        rgb, mask = _transform(rgb, mask, side, float(rng.uniform(-180, 180)), False)
        x, y = (int(v) for v in rng.integers(-side // 3, size - side // 2, 2))
        if rng.uniform() < spec.shadow_share:
            probe = np.zeros((size, size, 3), np.float32)
            _shadow(canvas, _place(probe, rgb, mask, x, y), rng)
        _place(canvas, rgb, mask, x, y)
    chosen = [] if empty else [main]
    if not empty and len(items) > 1:
        n_extra = int(rng.integers(spec.extra_items[0], spec.extra_items[1] + 1))
        others = [i for i in range(len(items)) if i != main]
        chosen += [int(i) for i in rng.choice(others, size=min(n_extra, len(others)), replace=False)]
    placed_masks: list[np.ndarray] = []
    # The others first (smaller, anywhere, partly out of frame), the main item last, on top.
    for rank, idx in enumerate(reversed(chosen)):
        is_main = rank == len(chosen) - 1
        item = items[idx]
        side = size * rng.uniform(*spec.scale) if is_main else size * rng.uniform(spec.scale[0], 0.5 * sum(spec.scale))
        rgb, mask = _transform(
            item.rgb.astype(np.float32),
            item.mask,
            side,
            float(rng.uniform(-spec.rotation, spec.rotation)),
            bool(rng.uniform() < 0.5),
        )
        h, w = mask.shape
        if is_main:  # fully in frame, anywhere
            x = int(rng.integers(0, max(1, size - w + 1))) if w < size else (size - w) // 2
            y = int(rng.integers(0, max(1, size - h + 1))) if h < size else (size - h) // 2
        else:
            x, y = int(rng.integers(-w // 4, size - 3 * w // 4 + 1)), int(rng.integers(-h // 4, size - 3 * h // 4 + 1))
        probe = np.zeros((size, size, 3), np.float32)
        where = _place(probe, rgb, mask, x, y)
        if rng.uniform() < spec.shadow_share:
            _shadow(canvas, where, rng)
        _place(canvas, rgb, mask, x, y)
        # What this item covers is no longer visible of the ones placed before it.
        placed_masks = [m * (1 - where) for m in placed_masks] + [where]
    visible = list(reversed(placed_masks))  # main item first
    boxes, sources = [], []
    union = np.zeros((size, size), np.float32)
    for idx, m in zip(chosen, visible):
        box = _box(m)
        if box is None or box[2] * box[3] < 4:
            continue
        boxes.append(box)
        sources.append(idx)
        union = np.maximum(union, m)
    image = _camera(canvas, spec, rng)
    return Composite(image=image, mask=(union > MASK_LEVEL).astype(np.uint8), boxes=boxes, sources=sources)


def composite_batch(
    items: list[Cutout], n: int, *, seed: int, spec: SceneSpec = SceneSpec()
) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """n composites, each with a main item drawn from `items`: (images uint8 [n, s, s, 3],
    masks uint8 [n, s, s], boxes per composite). The same seed gives the same batch."""
    if not items:
        raise ValueError("composite_batch needs at least one cut-out. Received: items=[]")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, spec.size, spec.size, 3), np.uint8)
    masks = np.zeros((n, spec.size, spec.size), np.uint8)
    boxes = []
    for i in range(n):
        c = composite(items, int(rng.integers(len(items))), rng, spec)
        images[i], masks[i] = c.image, c.mask
        boxes.append(c.boxes)
    return images, masks, boxes
