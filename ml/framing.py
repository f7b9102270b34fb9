"""Framing: every image shows its item the same way before a model sees it.

Product photos are mostly one item on a plain background, at any scale and offset. `frame()` finds
the background from the border pixels (a colour plane fitted to them, so gradients and vignetting
count as background), takes the bounding box of the pixels that differ from it, crops to that box,
pads it to a square and resizes it; it then replaces the background (what is connected to the
border and close to the plane) with the catalogue's own background colour, and, in a grey-scale
catalogue, inverts grey-scale images on the opposite background (a dark item on white where the
catalogue has light items on black) and stretches their contrast. A colour catalogue does
neither: a white product on a white backdrop, or a darker photo whose colours are faint, is a
colour photo of that catalogue and keeps its light and dark. Where the background is not plain (a busy photo, a close-up that fills the
frame), the whole photo is used, padded to a square.

Deterministic and cheap (NumPy and Pillow at a working size a few times the model's input), so
training, indexing and photo search all run it and get the same pixels for the same file. The
catalogue's conventions (`Framing.background`) are measured once at training time
(`catalogue_framing`) and stored with the model version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

WORK_FACTOR = 2  # analyse at up to 2x the model's input size
MIN_WORK = 96
BORDER = 0.04  # the outer 4% of each side is where the background is read
PLAIN_SHARE = 0.6  # at least this share of the border must match the fitted background
MIN_THRESHOLD = 22.0  # an item differs from its background by more than this (8-bit levels)
GREY_CHROMA = 12.0  # an image whose pixels differ between channels by less than this is grey-scale
STRICT_GREY_CHROMA = 8.0  # a grey-scale catalogue's image: 99% of its pixels differ by at most this
GREYSCALE_SHARE = 0.9  # a catalogue is grey-scale when this share of its images is
MAX_EXPOSURE_GAIN = 1.8  # the most a light background read as under-exposed brightens the item
BORDER_OUTLIER = 40.0  # border pixels further than this from the border's median are not background
MIN_BORDER_PIXELS = 8  # fewer background-like border pixels than this: fit the plane to all of them
NOISE_MARGIN = 14.0  # an item differs from the fitted plane by this much more than the border's noise
MIN_ITEM_SHARE = 0.002  # an item covers at least this share of the photo (less: specks, no item)
MAX_ITEM_SHARE = 0.92  # more than this differs from the "background": it is no plain background
LINE_SHARE = 0.01  # a row or column belongs to the item box when this share of it is item
MIN_BOX_SHARE = 0.005  # a box smaller than this share of the photo is noise, not an item
MID_GREY = 128  # luma above this is a light background, below it a dark one
DARKEST_EXPOSURE_BACKDROP = 96  # a backdrop darker than this is dark by design, not under-exposed
MIN_CONTRAST = 8.0  # an item fainter than this against its background is not stretched
STRETCH_LIMITS = (0.5, 3.0)  # a grey-scale item's contrast is scaled at most this much down or up
STRETCH_PERCENTILE = 99  # the item's strongest 1% reaches full range
NOISE_PERCENTILE = 90  # the border's noise: what 90% of its background-like pixels stay within
SOFT_EDGE = 0.5  # the background mask fades over this share of the threshold around the item's edge
GREY_PERCENTILE = 99  # strictly grey: this percentile of the pixels' channel spread is within STRICT_GREY_CHROMA
CATALOGUE_SAMPLE_SIZE = 32  # catalogue_framing reads each sample image at this model size (cheap)


@dataclass(frozen=True)
class Framing:
    """How a model version frames images (stored in its metadata).

    enabled: crop to the item and normalise its background (False: pad the whole image to a square).
    background: the catalogue's background colour (RGB), which every image's background becomes;
    None keeps each image's own.
    """

    enabled: bool = True
    background: tuple[int, int, int] | None = None
    exposure: bool = False  # undo a darker exposure, read from how dark the background came out
    # The catalogue is grey-scale (Fashion-MNIST): grey images keep its polarity and get their
    # contrast stretched. None (metadata without the field): grey images get it in any catalogue.
    greyscale: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Framing":
        if not data:
            return cls(enabled=False)
        background = data.get("background")
        return cls(
            enabled=bool(data.get("enabled", True)),
            background=tuple(int(v) for v in background) if background is not None else None,
            exposure=bool(data.get("exposure", False)),  # metadata without the field: off
            greyscale=None if data.get("greyscale") is None else bool(data["greyscale"]),
        )


@dataclass(frozen=True)
class Background:
    """What the border says about an image (at working size)."""

    colour: np.ndarray  # float32 [3], the fitted plane at the centre
    plane: np.ndarray  # float32 [h, w, 3]
    threshold: float
    plain: bool
    noise: float = 0.0  # what 90% of the border's background-like pixels stay within (8-bit levels)


def work_size(image_size: int) -> int:
    """The size framing analyses an image at, for a model input of image_size."""
    return max(MIN_WORK, WORK_FACTOR * image_size)


def _work_image(rgb: np.ndarray, image_size: int) -> Image.Image:
    img = Image.fromarray(rgb)
    work = work_size(image_size)
    if max(img.size) > work:
        img.thumbnail((work, work), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


def estimate_background(a: np.ndarray) -> Background:
    """Fit background = c + gx * x + gy * y per channel to the border pixels that look like it."""
    h, w, _ = a.shape
    band = max(1, int(round(BORDER * min(h, w))))
    mask = np.zeros((h, w), bool)
    mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = True, True, True, True
    ys, xs = np.nonzero(mask)
    values = a[ys, xs].astype(np.float32)
    median = np.median(values, axis=0)
    close = np.abs(values - median).max(axis=1) <= BORDER_OUTLIER
    if close.sum() < MIN_BORDER_PIXELS:
        close[:] = True
    yn, xn = ys / max(h - 1, 1) - 0.5, xs / max(w - 1, 1) - 0.5
    design = np.stack([np.ones_like(yn), xn, yn], axis=1)
    coef, *_ = np.linalg.lstsq(design[close], values[close], rcond=None)
    gy = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5)[:, None, None]
    gx = (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5)[None, :, None]
    plane = coef[0].astype(np.float32) + gx * coef[1].astype(np.float32) + gy * coef[2].astype(np.float32)
    residual = np.abs(values - design @ coef).max(axis=1)
    noise = float(np.percentile(residual[close], NOISE_PERCENTILE)) if close.any() else 255.0
    threshold = max(MIN_THRESHOLD, noise + NOISE_MARGIN)
    plain = float(np.mean(residual <= threshold)) >= PLAIN_SHARE
    return Background(
        colour=coef[0].astype(np.float32),
        plane=plane.astype(np.float32),
        threshold=threshold,
        plain=plain,
        noise=noise,
    )


def _item_box(distance: np.ndarray, threshold: float) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the pixels that differ from the background, or None."""
    h, w = distance.shape
    fg = distance > threshold
    # Without the specks a textured or graded background leaves above the threshold (an opening:
    # what a 3 x 3 erosion keeps, grown back): they would stretch the box to the photo's edges.
    solid = _opened(fg)
    if solid.mean() >= MIN_ITEM_SHARE:
        fg = solid
    share = fg.mean()
    if share < MIN_ITEM_SHARE or share > MAX_ITEM_SHARE:
        return None
    rows = np.flatnonzero(fg.sum(axis=1) >= max(1, LINE_SHARE * w))
    cols = np.flatnonzero(fg.sum(axis=0) >= max(1, LINE_SHARE * h))
    if len(rows) == 0 or len(cols) == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) * (right - left) < MIN_BOX_SHARE * h * w:
        return None
    return int(top), int(left), int(bottom), int(right)


def _opened(mask: np.ndarray) -> np.ndarray:
    """Morphological opening of a boolean mask with a 3 x 3 cross."""
    eroded = mask.copy()
    eroded[1:] &= mask[:-1]
    eroded[:-1] &= mask[1:]
    eroded[:, 1:] &= mask[:, :-1]
    eroded[:, :-1] &= mask[:, 1:]
    grown = eroded.copy()
    grown[1:] |= eroded[:-1]
    grown[:-1] |= eroded[1:]
    grown[:, 1:] |= eroded[:, :-1]
    grown[:, :-1] |= eroded[:, 1:]
    return grown


def _connected_to_border(low: np.ndarray) -> np.ndarray:
    """The pixels of `low` reachable from the image border through `low` (4-connected)."""
    reach = np.zeros_like(low)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = low[0], low[-1], low[:, 0], low[:, -1]
    for _ in range(low.shape[0] + low.shape[1]):
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= low
        if np.array_equal(grown, reach):
            break
        reach = grown
    return reach


def _background_mask(distance: np.ndarray, threshold: float) -> np.ndarray:
    """float [h, w] in [0, 1]: 1 where a pixel is background connected to the border (soft edge)."""
    connected = _connected_to_border(distance <= threshold)
    soft = np.clip((threshold - distance) / (SOFT_EDGE * threshold) + 0.5, 0.0, 1.0)
    return np.where(connected, soft, 0.0).astype(np.float32)


def _square(img: Image.Image, box: tuple[int, int, int, int], colour, margin_px: float) -> Image.Image:
    top, left, bottom, right = box
    side = max(bottom - top, right - left)
    side = side + 2 * margin_px
    cy, cx = (top + bottom) / 2, (left + right) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    side = int(round(side))
    canvas = Image.new(img.mode, (side, side), colour)
    src = (max(0, x0), max(0, y0), min(img.width, x0 + side), min(img.height, y0 + side))
    canvas.paste(img.crop(src), (src[0] - x0, src[1] - y0))
    return canvas


def frame(rgb: np.ndarray, image_size: int, framing: Framing = Framing()) -> np.ndarray:
    """uint8 RGB [h, w, 3] -> uint8 RGB [image_size, image_size, 3], framed as described above."""
    rgb, _ = frame_with_mask(rgb, image_size, framing)
    return rgb


def frame_with_mask(rgb: np.ndarray, image_size: int, framing: Framing = Framing()) -> tuple[np.ndarray, np.ndarray]:
    """frame(), plus the item's mask [image_size, image_size] in [0, 1] (1 = item), which training
    uses to put items on other backgrounds."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not framing.enabled and rgb.shape[0] == rgb.shape[1] == image_size:
        # Already square at the model's size: padding adds nothing and PIL's resize to the same size
        # is a copy, so these are the pixels the general path gives (a test compares), at a tenth
        # of its cost (a Fashion-MNIST catalogue's every image; bench/indexing.py).
        return rgb.copy(), np.ones((image_size, image_size), np.float32)
    if not framing.enabled:
        img = Image.fromarray(rgb)
        box = (0, 0, img.height, img.width)
        out = _square(img, box, (0, 0, 0), 0).resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(out), np.ones((image_size, image_size), np.float32)
    img = _work_image(rgb, image_size)
    a = np.asarray(img, np.float32)
    bg = estimate_background(a)
    distance = np.abs(a - bg.plane).max(axis=-1)
    box = _item_box(distance, bg.threshold) if bg.plain else None
    whole = box is None
    if whole:
        box = (0, 0, img.height, img.width)
        background = np.zeros_like(distance)
    else:
        background = _background_mask(distance, bg.threshold)
    target = np.asarray(framing.background if framing.background is not None else bg.colour, np.float32)
    # Grey-scale treatment (polarity, stretch) is for grey-scale catalogues: in a colour one, a dim
    # photo's faint colours would read as grey (greyscale None, metadata without the field: any).
    grey = (
        framing.greyscale is not False
        and float(np.abs(a - a.mean(axis=-1, keepdims=True)).max(axis=-1).mean()) < GREY_CHROMA / 2
    )
    colour = tuple(int(round(v)) for v in np.clip(target, 0, 255))
    side = max(box[2] - box[0], box[3] - box[1])
    margin_px = side / max(image_size - 2, 1)  # one output pixel around the item

    def squared(source: Image.Image, fill, scale: float = 1.0) -> np.ndarray:
        """The item's square (found at working size) cut from `source` and resized to image_size."""
        at = tuple(int(round(v * scale)) for v in box)
        out = _square(source, at, fill, margin_px * scale).resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(out, np.float32)

    # The item's pixels come from the decoded image, not the working copy: a small item in a large
    # photo keeps its detail (the working copy is only where the item and background are found).
    scale = rgb.shape[1] / img.width
    pixels = squared(Image.fromarray(rgb), colour, scale)
    # The background mask (1 = background; the padding around the photo counts as background) and
    # the fitted background plane, in the same square.
    background = squared(Image.fromarray(np.clip(background * 255 + 0.5, 0, 255).astype(np.uint8), "L"), 255) / 255.0
    plane = np.stack([squared(Image.fromarray(bg.plane[..., c], "F"), float(bg.colour[c])) for c in range(3)], axis=-1)
    # A grey-scale catalogue has one polarity (light on dark, or dark on light): keep to it.
    invert = (
        grey
        and bg.plain
        and framing.background is not None
        and (_luma(bg.colour) > MID_GREY) != (_luma(framing.background) > MID_GREY)
    )
    if invert:
        pixels = 255.0 - pixels
        plane = 255.0 - plane
    if grey and bg.plain and not whole:
        pixels = _stretch(pixels, plane, 1.0 - background)
    elif framing.exposure and framing.background is not None and bg.plain and not whole:
        pixels = pixels * _exposure_gain(bg.colour, framing.background)
    # The background becomes the catalogue's colour (the plane itself where no colour is known).
    fill = target[None, None, :] if framing.background is not None else plane
    pixels = pixels * (1.0 - background[..., None]) + fill * background[..., None]
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8), (1.0 - background).astype(np.float32)


def _luma(colour) -> float:
    r, g, b = (float(v) for v in colour)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _exposure_gain(photo_background, catalogue_background) -> float:
    """How much brighter the photo would be had its (light) background come out as light as the
    catalogue's: a plain light background photographed grey says the shot is under-exposed, and the
    item is as dark as the background is. 1 where the two are of opposite polarity (a dark backdrop
    says nothing about the exposure) or the photo is the brighter (a white background cannot come
    out brighter than white, so over-exposure cannot be read from it). Bounded, so that a backdrop
    that really is grey is not taken for a photo shot in the dark."""
    photo, catalogue = _luma(photo_background), _luma(catalogue_background)
    if catalogue <= MID_GREY or photo <= DARKEST_EXPOSURE_BACKDROP or photo >= catalogue:
        return 1.0
    return float(min(catalogue / photo, MAX_EXPOSURE_GAIN))


def _stretch(a: np.ndarray, plane: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Grey-scale only: scale the item's contrast against the background so its strongest 1% reaches
    full range (undoes a darker or brighter exposure; colour photos keep their brightness)."""
    weights = item > 0.5
    if weights.sum() < 4:
        return a
    diff = a - plane
    strongest = float(np.percentile(np.abs(diff[weights]).max(axis=-1), STRETCH_PERCENTILE))
    room = 255.0 - float(plane.mean()) if diff[weights].mean() >= 0 else float(plane.mean())
    if strongest < MIN_CONTRAST:
        return a
    gain = np.clip(room / strongest, *STRETCH_LIMITS)
    return np.clip(plane + diff * gain, 0.0, 255.0)


def strictly_grey(a: np.ndarray) -> bool:
    """Whether an image (float RGB) is grey-scale: 99% of its pixels' channels within
    STRICT_GREY_CHROMA of each other (a grey-scale file or scan; a photo of a white product has
    its light's cast, its shadows' and JPEG's colour noise)."""
    chroma = a.max(axis=-1) - a.min(axis=-1)
    return float(np.percentile(chroma, GREY_PERCENTILE)) <= STRICT_GREY_CHROMA


def catalogue_framing(images: Iterable[np.ndarray]) -> Framing:
    """The conventions of a catalogue, from a sample of its images (uint8 RGB): its usual
    background colour (the median over images whose background is plain), and whether it is
    grey-scale (GREYSCALE_SHARE of the images strictly grey)."""
    colours, grey, n = [], 0, 0
    for rgb in images:
        img = _work_image(np.ascontiguousarray(rgb, dtype=np.uint8), CATALOGUE_SAMPLE_SIZE)
        a = np.asarray(img, np.float32)
        bg = estimate_background(a)
        n += 1
        grey += strictly_grey(a)
        if bg.plain:
            colours.append(bg.colour)
    greyscale = n > 0 and grey >= GREYSCALE_SHARE * n
    if not colours:
        return Framing(enabled=True, background=None, greyscale=greyscale)
    colour = np.clip(np.median(np.stack(colours), axis=0), 0, 255)
    return Framing(enabled=True, background=tuple(int(round(v)) for v in colour), exposure=True, greyscale=greyscale)
