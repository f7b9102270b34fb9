"""A generated colour photo catalogue: Fashion-MNIST shapes given colours and patterns, photographed.

Each product is one Fashion-MNIST item (its category), a named colour (jittered per product) and a
pattern (solid, stripes, dots, checks, two-tone) in a second colour. Each photo puts the item on a
background (plain shades, gradients, light texture, now and then dark) at a random scale, offset,
rotation and mirror, under random light (brightness, contrast, a slight warm/cool cast), sometimes
with a soft shadow, and saves it as JPEG (some with an EXIF orientation tag and the pixels stored
rotated, as phones do), PNG, WebP, or a transparent PNG cut-out.

The held-out query photos (one per product) come from a *different* style: backgrounds, scales,
lighting and rotations the catalogue photos never use (`QUERY_STYLE`), so a model cannot learn the
query generator from the catalogue.

`write_catalogue()` writes images/, products.csv (the `import_catalog` format), queries/ and
manifest.json (sku -> category, colour, pattern, query file). No Django, no TensorFlow.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (196, 32, 38),
    "orange": (236, 124, 28),
    "yellow": (232, 200, 40),
    "green": (42, 138, 62),
    "teal": (24, 140, 140),
    "blue": (38, 78, 188),
    "purple": (118, 52, 150),
    "pink": (232, 128, 168),
    "brown": (116, 74, 40),
    "black": (34, 34, 36),
    "white": (236, 236, 230),
    "grey": (128, 128, 132),
}
PATTERNS = ("solid", "solid", "stripes", "dots", "checks", "two-tone")


@dataclass(frozen=True)
class Style:
    """How photos are taken: each range is sampled uniformly per photo."""

    backgrounds: tuple[tuple[int, int, int], ...]
    dark_backgrounds: tuple[tuple[int, int, int], ...]
    dark_share: float
    scale: tuple[float, float]  # the item's longer side over the photo's shorter side
    rotation: float  # degrees, either way
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    cast: float  # +- per channel gain of a warm/cool colour cast
    gradient: float  # brightness change across the background
    texture: float  # noise amplitude on the background
    shadow_share: float
    size: tuple[int, int]  # photo side lengths
    formats: dict[str, float] = field(default_factory=dict)  # share of each way of saving


CATALOGUE_STYLE = Style(
    backgrounds=((255, 255, 255), (244, 244, 244), (236, 232, 224), (226, 230, 236), (214, 214, 214)),
    dark_backgrounds=((46, 46, 50),),
    dark_share=0.08,
    scale=(0.5, 0.85),
    rotation=10.0,
    brightness=(0.8, 1.15),
    contrast=(0.9, 1.1),
    cast=0.03,
    gradient=0.06,
    texture=2.0,
    shadow_share=0.4,
    size=(360, 640),
    formats={"jpeg": 0.62, "jpeg_exif": 0.12, "png": 0.08, "webp": 0.06, "cutout": 0.12},
)

QUERY_STYLE = Style(
    backgrounds=((250, 246, 236), (232, 240, 232), (240, 228, 228), (200, 200, 196), (180, 190, 204)),
    dark_backgrounds=((24, 24, 24), (60, 52, 44), (30, 40, 60)),
    dark_share=0.2,
    scale=(0.38, 0.92),
    rotation=15.0,
    brightness=(0.7, 1.3),
    contrast=(0.85, 1.15),
    cast=0.05,
    gradient=0.12,
    texture=5.0,
    shadow_share=0.5,
    size=(320, 800),
    formats={"jpeg": 0.7, "jpeg_exif": 0.2, "png": 0.1},
)


DARK_QUERY_STYLE = replace(QUERY_STYLE, dark_share=1.0)
GENERATOR_VERSION = 2  # bump when the photos change, so bench/photos.py makes the catalogue anew


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    shape: int  # index into the Fashion-MNIST images
    category: str
    colour: str
    rgb: tuple[int, int, int]
    pattern: str
    second: tuple[int, int, int]
    pattern_scale: float
    pattern_angle: float


def product_specs(labels: np.ndarray, class_names, n_products: int, rng: np.random.Generator) -> list[ProductSpec]:
    """n products with balanced categories, random colours and patterns, distinct shapes."""
    by_class = [np.flatnonzero(labels == c) for c in range(len(class_names))]
    specs = []
    for i in range(n_products):
        c = i % len(class_names)
        shape = int(rng.choice(by_class[c]))
        colour = str(rng.choice(list(COLOURS)))
        base = np.asarray(COLOURS[colour], float)
        rgb = tuple(int(v) for v in np.clip(base + rng.uniform(-14, 14, 3), 0, 255))
        pattern = str(rng.choice(PATTERNS))
        # The second colour: a lighter or darker tint of the first, or white/black, so the colour name holds.
        mode = rng.integers(3)
        if mode == 0:
            second = np.clip(base * 0.55, 0, 255)
        elif mode == 1:
            second = np.clip(base + (255 - base) * 0.55, 0, 255)
        else:
            second = np.array((245, 245, 240)) if base.mean() < 140 else np.array((30, 30, 30))
        specs.append(
            ProductSpec(
                sku=f"P{i:05d}",
                shape=shape,
                category=class_names[c],
                colour=colour,
                rgb=rgb,
                pattern=pattern,
                second=tuple(int(v) for v in second),
                pattern_scale=float(rng.uniform(0.07, 0.16)),
                pattern_angle=float(rng.choice([0.0, 90.0, 45.0, -45.0])),
            )
        )
    return specs


def render_item(spec: ProductSpec, shape: np.ndarray, side: int) -> Image.Image:
    """The coloured, patterned item as an RGBA image [side, side] (transparent around it)."""
    work = max(32, side // 2)  # drawn at half size, then enlarged: the pattern stays crisp enough
    img = Image.fromarray(shape).resize((work, work), Image.BICUBIC).filter(ImageFilter.GaussianBlur(work / 160))
    lum = np.asarray(img, np.float32) / 255.0
    alpha = np.clip((lum - 0.04) / 0.14, 0.0, 1.0)
    yy, xx = np.mgrid[0:work, 0:work].astype(np.float32) / work
    t = math.radians(spec.pattern_angle)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    period = spec.pattern_scale
    if spec.pattern == "stripes":
        second = (np.floor(u / (period / 2)) % 2) == 1
    elif spec.pattern == "checks":
        second = ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    elif spec.pattern == "dots":
        cu, cv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
        second = cu * cu + cv * cv < 0.09
    elif spec.pattern == "two-tone":
        second = yy > 0.5
    else:
        second = np.zeros((work, work), bool)
    colour = np.where(second[..., None], np.asarray(spec.second, np.float32), np.asarray(spec.rgb, np.float32))
    # Fashion-MNIST's own shading becomes folds and seams on the coloured item.
    shade = 0.62 + 0.38 * np.clip(lum / max(float(lum.max()), 1e-3), 0, 1)
    rgba = np.concatenate([colour * shade[..., None], alpha[..., None] * 255], axis=-1)
    return Image.fromarray(rgba.clip(0, 255).astype(np.uint8), "RGBA").resize((side, side), Image.BILINEAR)


def _background(style: Style, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    dark = rng.random() < style.dark_share
    base = np.asarray(
        style.dark_backgrounds[rng.integers(len(style.dark_backgrounds))]
        if dark
        else style.backgrounds[rng.integers(len(style.backgrounds))],
        np.float32,
    )
    gh, gw = h // 8 + 1, w // 8 + 1  # drawn small, then enlarged
    ramp = np.linspace(-1, 1, gh, dtype=np.float32)[:, None, None] * rng.uniform(-style.gradient, style.gradient)
    small = base[None, None, :] * (1.0 + ramp) + rng.normal(0, style.texture, (gh, gw, 1)).astype(np.float32)
    small = np.broadcast_to(small, (gh, gw, 3)).clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def photograph(
    spec: ProductSpec, shape: np.ndarray, style: Style, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 photo, alpha of the item in it) of one product in one style."""
    w, h = (int(rng.integers(style.size[0], style.size[1] + 1)) for _ in range(2))
    sprite = render_item(spec, shape, int(rng.uniform(*style.scale) * min(w, h)))
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sprite = sprite.rotate(float(rng.uniform(-style.rotation, style.rotation)), resample=Image.BILINEAR, expand=True)
    sw, sh = sprite.size
    x0 = int(rng.integers(0, w - sw + 1)) if w > sw else (w - sw) // 2
    y0 = int(rng.integers(0, h - sh + 1)) if h > sh else (h - sh) // 2
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    layer.paste(sprite, (x0, y0))
    alpha = layer.getchannel("A")
    photo = Image.fromarray(_background(style, w, h, rng)).convert("RGBA")
    if rng.random() < style.shadow_share:
        dx, dy = (int(rng.integers(4, 16)) for _ in range(2))
        small = alpha.resize((w // 4, h // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
        shadow = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        shadow.putalpha(small.resize((w, h), Image.BILINEAR).point(lambda v: int(v * 0.28)))
        photo.alpha_composite(shadow.crop((0, 0, w - dx, h - dy)), (dx, dy))
    photo.alpha_composite(layer)
    gain = rng.uniform(*style.brightness) * (1.0 + rng.uniform(-style.cast, style.cast, 3))
    contrast = rng.uniform(*style.contrast)
    lut = np.concatenate([np.clip(((np.arange(256) - 128.0) * contrast + 128.0) * g, 0, 255) for g in gain])
    photo = photo.convert("RGB").point(lut.astype(np.uint8).tolist())
    return np.asarray(photo), np.asarray(alpha, np.float32) / 255.0


_EXIF_ORIENTATION = 0x0112
# orientation tag -> how the stored pixels are turned (the viewer undoes it with exif_transpose)
_STORE_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}


def encode(photo: np.ndarray, alpha: np.ndarray, fmt: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """(file bytes, extension) of a photo saved one way."""
    buf = io.BytesIO()
    img = Image.fromarray(photo)
    if fmt == "cutout":
        rgba = np.concatenate([photo, (alpha[..., None] * 255).astype(np.uint8)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if fmt == "png":
        img.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if fmt == "webp":
        img.save(buf, format="WEBP", quality=int(rng.integers(70, 95)))
        return buf.getvalue(), ".webp"
    quality = int(rng.integers(60, 95))
    if fmt == "jpeg_exif":
        orientation = int(rng.choice(list(_STORE_TURN)))
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = orientation
        img.transpose(_STORE_TURN[orientation]).save(buf, format="JPEG", quality=quality, exif=exif.tobytes())
        return buf.getvalue(), ".jpg"
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), ".jpg"


def _pick(formats: dict[str, float], rng: np.random.Generator) -> str:
    names = list(formats)
    p = np.asarray([formats[n] for n in names], float)
    return str(rng.choice(names, p=p / p.sum()))


def write_catalogue(
    out: Path,
    shapes: np.ndarray,
    labels: np.ndarray,
    class_names,
    *,
    n_products: int,
    photos: tuple[int, int] = (2, 4),
    seed: int = 0,
    progress=None,
) -> dict:
    """Write the catalogue under `out`; return the manifest (also written as manifest.json)."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    specs = product_specs(labels, class_names, n_products, rng)
    products = {}
    with open(out / "products.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sku", "title", "category", "price", "description", "images"])
        for n, spec in enumerate(specs):
            files = []
            for j in range(int(rng.integers(photos[0], photos[1] + 1))):
                photo, alpha = photograph(spec, shapes[spec.shape], CATALOGUE_STYLE, rng)
                data, ext = encode(photo, alpha, _pick(CATALOGUE_STYLE.formats, rng), rng)
                name = f"{spec.sku}-{j}{ext}"
                (out / "images" / name).write_bytes(data)
                files.append(name)
            photo, alpha = photograph(spec, shapes[spec.shape], QUERY_STYLE, rng)
            data, ext = encode(photo, alpha, _pick(QUERY_STYLE.formats, rng), rng)
            query = f"{spec.sku}-query{ext}"
            (out / "queries" / query).write_bytes(data)
            # The same held-out style on a dark background ("the opposite background" of a shop's light
            # one), from a stream of its own so the rest of the catalogue does not depend on it.
            dark_rng = np.random.default_rng([seed, n, 1])
            photo, alpha = photograph(spec, shapes[spec.shape], DARK_QUERY_STYLE, dark_rng)
            data, ext = encode(photo, alpha, "jpeg", dark_rng)
            query_dark = f"{spec.sku}-query-dark{ext}"
            (out / "queries" / query_dark).write_bytes(data)
            title = f"{spec.colour.title()} {spec.pattern} {spec.category.lower()}"
            price = f"{rng.uniform(5, 200):.2f}"
            writer.writerow([spec.sku, title, spec.category, price, f"{title}, product {spec.sku}.", "|".join(files)])
            products[spec.sku] = {
                "category": spec.category,
                "colour": spec.colour,
                "pattern": spec.pattern,
                "images": files,
                "query": query,
                "query_dark": query_dark,
            }
            if progress:
                progress(n + 1, len(specs))
    manifest = {"seed": seed, "n_products": n_products, "generator": GENERATOR_VERSION, "products": products}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
