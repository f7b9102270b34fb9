"""Shopper photos of a photo catalogue's products: the item on a table, a bed or a floor, with things around it.

Each product of a catalogue made by bench/photo_catalogue.py (the same seed gives the same products)
is rendered afresh and photographed as a person with a phone would: on a surface drawn by this
module's own painters (wooden planks, a creased bedsheet, carpet, marble, concrete, a desk mat),
beside everyday things (a mug, a phone, a book, a pen, keys), smaller in the frame (0.4-0.65 of its
shorter side), rotated up to 20 degrees, under a colour cast of up to 12% per channel and a
vignette, a little out of focus, 480 px on the longer side, saved as JPEG at quality 55-85.

The surfaces, props and camera here share no code with ml/scenes.py (what the localiser and the
scene views train on), so the benchmark does not measure the training generator. Each photo's true
item box (its visible pixels) is in the manifest. No Django, no TensorFlow.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.photo_catalogue import product_specs, render_item

SURFACES = ("planks", "bedsheet", "carpet", "marble", "concrete", "desk_mat")
LONG_SIDE = 480
SCALE = (0.4, 0.65)  # the item's longer side over the photo's shorter side
ROTATION = 20.0
CAST = 0.12
JPEG_QUALITY = (55, 86)
GENERATOR_VERSION = 1


def _lowfreq(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [h, w] smooth field in about [-1, 1] (a small random grid, enlarged bicubically)."""
    gh, gw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    grid = rng.normal(0, 0.5, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC), np.float32)


def surface(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float32 RGB [h, w, 3] in [0, 255]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "planks":
        base = np.array(rng.choice([(150, 105, 65), (190, 150, 100), (110, 75, 50), (205, 185, 150)]), np.float32)
        width = rng.uniform(0.12, 0.25) * max(h, w)
        vertical = rng.random() < 0.5
        across = xx if vertical else yy
        plank = np.floor(across / width)
        tone = 1.0 + 0.12 * np.sin(plank * 12.9898 + rng.uniform(0, 6))  # each plank its own shade
        grain = 0.08 * np.sin(across / rng.uniform(2.0, 5.0) + 3 * _lowfreq(h, w, 6, rng)) + 0.05 * _lowfreq(
            h, w, 40, rng
        )
        seam = (np.abs(across - (plank + 0.5) * width) > width / 2 - 1.5).astype(np.float32) * 0.35
        out = base[None, None] * (tone + grain - seam)[..., None]
    elif kind == "bedsheet":
        base = np.array(
            rng.choice([(235, 235, 240), (200, 215, 235), (240, 225, 215), (180, 200, 180), (90, 100, 130)]), np.float32
        )
        folds = 0.1 * _lowfreq(h, w, 5, rng) + 0.06 * np.sin(
            (xx * 0.7 + yy * 0.3) / rng.uniform(18, 40) + 2 * _lowfreq(h, w, 4, rng)
        )
        out = base[None, None] * (1.0 + folds)[..., None]
    elif kind == "carpet":
        base = np.array(
            rng.choice([(120, 40, 40), (70, 80, 95), (160, 150, 130), (60, 90, 60), (40, 40, 45)]), np.float32
        )
        fibre = np.clip(128 + rng.normal(0, 40, (h, w)), 0, 255).astype(np.uint8)
        fibre = (np.asarray(Image.fromarray(fibre, "L").filter(ImageFilter.GaussianBlur(0.8)), np.float32) - 128) / 330
        out = base[None, None] * (1.0 + fibre + 0.08 * _lowfreq(h, w, 8, rng))[..., None]
    elif kind == "marble":
        base = np.array(rng.choice([(235, 232, 228), (215, 215, 220), (60, 60, 65)]), np.float32)
        turb = _lowfreq(h, w, 6, rng) * 3 + _lowfreq(h, w, 20, rng)
        veins = np.abs(np.sin((xx + yy) / rng.uniform(40, 90) + turb)) ** 0.25
        out = base[None, None] * (0.75 + 0.25 * veins)[..., None]
    elif kind == "concrete":
        base = np.array(rng.choice([(150, 150, 148), (120, 118, 115), (175, 170, 160)]), np.float32)
        speck = rng.normal(0, 0.06, (h, w)).astype(np.float32)
        out = base[None, None] * (1.0 + speck + 0.1 * _lowfreq(h, w, 10, rng))[..., None]
    elif kind == "desk_mat":
        base = np.array(rng.choice([(40, 60, 50), (30, 30, 35), (70, 50, 40), (200, 190, 170)]), np.float32)
        step = rng.uniform(20, 40)
        grid = ((np.abs((xx % step) - step / 2) < 0.6) | (np.abs((yy % step) - step / 2) < 0.6)).astype(np.float32)
        out = base[None, None] * (1.0 + 0.25 * grid + 0.04 * _lowfreq(h, w, 6, rng))[..., None]
    else:
        raise ValueError(f"kind must be one of {SURFACES}. Received: kind={kind!r}")
    return np.clip(out, 0, 255).astype(np.float32)


def _prop(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    """An everyday thing as RGBA [side, side] (transparent around it)."""
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = side
    if kind == "mug":  # seen from above: a rim, the coffee, a handle
        colour = tuple(int(v) for v in rng.choice([(240, 240, 240), (200, 40, 40), (30, 60, 120), (250, 200, 60)]))
        d.ellipse([s * 0.55, s * 0.38, s * 0.95, s * 0.62], outline=colour + (255,), width=max(2, s // 14))
        d.ellipse([s * 0.05, s * 0.1, s * 0.75, s * 0.9], fill=colour + (255,))
        d.ellipse([s * 0.15, s * 0.2, s * 0.65, s * 0.8], fill=(70, 40, 25, 255))
    elif kind == "phone":
        d.rounded_rectangle([s * 0.25, s * 0.05, s * 0.75, s * 0.95], radius=s // 10, fill=(20, 20, 24, 255))
        top = np.array(rng.uniform(40, 200, 3))
        d.rounded_rectangle(
            [s * 0.28, s * 0.1, s * 0.72, s * 0.9], radius=s // 14, fill=tuple(int(v) for v in top) + (255,)
        )
    elif kind == "book":
        cover = tuple(int(v) for v in rng.uniform(30, 220, 3))
        d.rectangle([s * 0.1, s * 0.15, s * 0.9, s * 0.85], fill=cover + (255,))
        d.rectangle([s * 0.1, s * 0.15, s * 0.18, s * 0.85], fill=tuple(int(v * 0.6) for v in cover) + (255,))
        d.rectangle([s * 0.3, s * 0.3, s * 0.8, s * 0.4], fill=(240, 240, 230, 255))
    elif kind == "pen":
        colour = tuple(int(v) for v in rng.choice([(20, 20, 140), (10, 10, 10), (180, 20, 20)]))
        d.rounded_rectangle([s * 0.05, s * 0.46, s * 0.95, s * 0.54], radius=s // 40 + 1, fill=colour + (255,))
        d.rectangle([s * 0.8, s * 0.47, s * 0.95, s * 0.53], fill=(200, 200, 200, 255))
    else:  # keys: a ring and two metal bits
        d.ellipse([s * 0.1, s * 0.1, s * 0.4, s * 0.4], outline=(190, 190, 195, 255), width=max(2, s // 20))
        d.polygon(
            [(s * 0.35, s * 0.3), (s * 0.9, s * 0.6), (s * 0.85, s * 0.7), (s * 0.3, s * 0.4)], fill=(200, 180, 90, 255)
        )
        d.polygon(
            [(s * 0.3, s * 0.35), (s * 0.55, s * 0.95), (s * 0.45, s * 0.95), (s * 0.25, s * 0.4)],
            fill=(180, 180, 185, 255),
        )
    return img


PROPS = ("mug", "phone", "book", "pen", "keys")


def shopper_photo(
    spec, shape: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int], str]:
    """(RGB uint8 photo, the item's true box (x, y, w, h), the surface) for one product."""
    portrait = rng.random() < 0.5
    short = int(LONG_SIDE * rng.uniform(0.66, 0.8))
    w, h = (short, LONG_SIDE) if portrait else (LONG_SIDE, short)
    kind = str(rng.choice(SURFACES))
    photo = Image.fromarray(surface(kind, h, w, rng).astype(np.uint8)).convert("RGBA")
    # Things first, around the frame; the item goes on top of them.
    for _ in range(int(rng.integers(1, 4))):
        side = int(min(w, h) * rng.uniform(0.18, 0.4))
        prop = _prop(str(rng.choice(PROPS)), side, rng).rotate(
            float(rng.uniform(0, 360)), expand=True, resample=Image.Resampling.BILINEAR
        )
        photo.alpha_composite(
            prop, (int(rng.integers(-side // 3, w - side // 2)), int(rng.integers(-side // 3, h - side // 2)))
        )
    sprite = render_item(spec, shape, int(rng.uniform(*SCALE) * min(w, h)))
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sprite = sprite.rotate(float(rng.uniform(-ROTATION, ROTATION)), resample=Image.Resampling.BILINEAR, expand=True)
    sw, sh = sprite.size
    x0 = int(rng.integers(0, max(1, w - sw + 1)))
    y0 = int(rng.integers(0, max(1, h - sh + 1)))
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    layer.paste(sprite, (x0, y0))
    alpha = np.asarray(layer.getchannel("A"))
    # A soft contact shadow to one side.
    dx, dy = (int(v) for v in rng.integers(3, 14, 2))
    shadow = layer.getchannel("A").filter(ImageFilter.GaussianBlur(6)).point(lambda v: int(v * 0.35))
    dark = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    dark.putalpha(shadow)
    photo.alpha_composite(dark.crop((0, 0, w - dx, h - dy)), (dx, dy))
    photo.alpha_composite(layer)
    rgb = np.asarray(photo.convert("RGB"), np.float32)
    # Light: a warm or cool cast, exposure, a vignette.
    gain = rng.uniform(0.8, 1.15) * (1.0 + rng.uniform(-CAST, CAST, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    vignette = 1.0 - rng.uniform(0.1, 0.35) * r2 / 0.5
    rgb = rgb * gain[None, None] * vignette[..., None]
    img = Image.fromarray(np.clip(rgb + rng.normal(0, 2.5, rgb.shape), 0, 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4)))
    ys, xs = np.nonzero(alpha > 127)
    box = (int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()), int(ys.max() + 1 - ys.min()))
    return np.asarray(img), box, kind


def write_shopper_photos(
    out: Path,
    shapes: np.ndarray,
    labels: np.ndarray,
    class_names,
    *,
    n_products: int,
    seed: int,
    skus: set[str] | None = None,
    progress=None,
) -> dict:
    """One shopper photo per product of the photo catalogue made with (n_products, seed), saved as
    JPEG under out/; returns (and writes) the manifest: sku -> file, true box, surface."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = product_specs(labels, class_names, n_products, np.random.default_rng(seed))
    photos = {}
    for n, spec in enumerate(specs):
        if skus is not None and spec.sku not in skus:
            continue
        rng = np.random.default_rng([seed, n, 23])  # a stream of its own per product
        rgb, box, kind = shopper_photo(spec, shapes[spec.shape], rng)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=int(rng.integers(*JPEG_QUALITY)))
        name = f"{spec.sku}-shopper.jpg"
        (out / name).write_bytes(buf.getvalue())
        photos[spec.sku] = {"file": name, "box": list(box), "surface": kind, "size": [rgb.shape[1], rgb.shape[0]]}
        if progress:
            progress(n + 1, len(specs))
    manifest = {"seed": seed, "n_products": n_products, "generator": GENERATOR_VERSION, "photos": photos}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def with_margin(box, width: int, height: int, margin: float = 0.05) -> tuple[int, int, int, int]:
    """A hand-drawn box: the true box grown by `margin` of its side each way, kept in the photo."""
    x, y, w, h = box
    mx, my = int(math.ceil(w * margin)), int(math.ceil(h * margin))
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(width, x + w + mx), min(height, y + h + my)
    return x0, y0, x1 - x0, y1 - y0
