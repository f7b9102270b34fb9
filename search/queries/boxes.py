"""Which part of a search photo to search with: the item Lookalike finds (`crop=auto`, the default),
the whole photo (`crop=none`) or a box the shopper drew (`crop=x,y,w,h`).

Boxes are always proposed (ml.proposals, the active version's localiser when it has one) on the photo
as it is shown, EXIF orientation applied, so the page and the API can offer every item as a choice
whatever was searched. Each box is the region that is searched when it is chosen: for a model that
frames its images (ml.framing crops to the item itself) the item's box, for one that does not, the box
grown until the item sits in it as in a catalogue packshot, with a margin. With `auto` the best box
becomes the crop, exactly as if it had been sent as x,y,w,h, except for one item on a plain background
that framing itself crops to, as in a packshot: the photo then goes in whole and the model sees what it
saw of the catalogue's own photos. A version with a localiser searches a proposed box with the item
alone (ml.isolate: the surface and props around it become the catalogue's background); a box the
shopper drew is searched as drawn. When no item is found the whole photo is searched and a notice says so.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from catalog.images import ImageInfo
from ml.models import ModelVersion
from ml.proposals import Box, packshot_like, propose_boxes
from ml.runtime import embedder_for

from .crop import BadCrop, Crop, crop_parse

logger = logging.getLogger(__name__)

AUTO, NONE = "auto", "none"
# Without framing, a box grows until it spans this share of the searched region's longest side: with the
# proposal's own margin the item then spans about 0.7 of it, as packshots show items (Fashion-MNIST: 0.6-0.9).
PACKSHOT_FILL = 0.8
SAME_BOX_IOU = 0.85  # a crop overlapping a proposed box this much is that box, chosen
PROPOSAL_SIDE = 1024  # boxes are found on a copy at most this large: as good, and a 40 MP photo stays cheap
ISOLATED_BACKGROUND = (255, 255, 255)  # where the catalogue keeps each photo's own background
NO_ITEM = "No item was found in the photo; these results are for the whole photo."
NO_PROPOSALS = "Lookalike could not look for items in this photo; these results are for the whole photo."

CropChoice = Crop | str  # a Crop, AUTO or NONE


@dataclass(frozen=True)
class BoxedPhoto:
    image: ImageInfo  # what is searched: the photo, or the boxed part of it
    boxes: list[Box]  # the items found, best first, in pixels of the photo as shown
    box: Crop | None  # the region searched; None: the whole photo
    chosen: int | None  # which of `boxes` was searched, when one was
    notice: str | None  # for people, when the results are not for what was asked
    crop: CropChoice  # what was asked


def crop_choice_parse(raw: str | None) -> CropChoice:
    """The crop parameter: empty or "auto" (find the item), "none" (the whole photo), or x,y,w,h
    (crop_parse). Raises BadCrop saying what is wrong."""
    text = (raw or "").strip()
    word = text.lower()
    if word in ("", AUTO):
        return AUTO
    if word == NONE:
        return NONE
    for mode in (AUTO, NONE):
        if word.startswith(mode) and any(ch.isdigit() for ch in word):
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise BadCrop(
                f"crop={mode} cannot go with coordinates: give crop=auto, crop=none or crop=x,y,w,h alone. Received: {shown!r}"
            )
    return crop_parse(text)


def crop_apply(info: ImageInfo, crop: Crop, version: ModelVersion | None = None) -> ImageInfo:
    """The boxed part of the photo as an ImageInfo of its own. The model reads the file
    (ml.preprocess), so the crop becomes the file: a lossless PNG (fast compression, same pixels).
    With a version that has a localiser and frames its images, the item alone (its surface replaced
    by the catalogue's background, ml.isolate) when the localiser finds it in the box."""
    cropped = _isolated(info, crop, version) or info.image.crop(crop.box)
    buffer = io.BytesIO()
    cropped.save(buffer, format="PNG", compress_level=1)
    return dataclasses.replace(info, format="PNG", image=cropped, width=crop.w, height=crop.h, data=buffer.getvalue())


def _isolated(info: ImageInfo, crop: Crop, version: ModelVersion | None) -> Image.Image | None:
    """The box with its item alone (ml.isolate), or None: no localiser, no framing, or no item found."""
    if version is None or not version.metrics.get("localiser") or not _frames(version):
        return None
    from ml.localiser import localiser_isolate

    background = embedder_for(version).framing.background or ISOLATED_BACKGROUND
    try:
        rgb = np.asarray(info.image.convert("RGB"))
        found = localiser_isolate(version, rgb, (crop.x, crop.y, crop.w, crop.h), background)
    except Exception:  # a localiser that fails must not fail the search: search the box as it is
        logger.exception("Isolating the item failed (model version %s)", version.pk)
        return None
    return None if found is None else Image.fromarray(found)


def boxes_propose(info: ImageInfo, version: ModelVersion | None, shown: np.ndarray | None = None) -> list[Box]:
    """The item boxes in the photo as shown, best first, in its pixels. shown: _proposal_rgb(info) when
    the caller has it already. Raises what the proposer raises."""
    shown = _proposal_rgb(info) if shown is None else shown
    boxes = list(propose_boxes(shown, version=version))
    # In the photo's pixels and inside it (a learned localiser may reach past an edge); empty boxes go.
    sx, sy = info.width / shown.shape[1], info.height / shown.shape[0]
    boxes = [b for b in (_box_scaled(b, sx, sy, info.width, info.height) for b in boxes) if b is not None]
    if not _frames(version):
        boxes = [_with_context(b, info.width, info.height) for b in boxes]
    return boxes


def _proposal_rgb(info: ImageInfo) -> np.ndarray:
    """The photo as shown, at most PROPOSAL_SIDE on its longer side: uint8 RGB [h, w, 3]."""
    img = info.image
    if max(img.size) > PROPOSAL_SIDE:
        img = img.copy()
        img.thumbnail((PROPOSAL_SIDE, PROPOSAL_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img.convert("RGB"))


def _frames(version: ModelVersion | None) -> bool:
    """Whether the version crops images to their item itself (ml.framing); unknown counts as yes, and
    a model that cannot load is photo_search's to report."""
    if version is None:
        return True
    try:
        return embedder_for(version).framing.enabled
    except Exception:  # noqa: BLE001 - any load failure is photo_search's to report, with its message
        return True


def _with_context(box: Box, width: int, height: int) -> Box:
    """The box grown on every side by the same amount, until it spans PACKSHOT_FILL of its longest side."""
    grow = (1 / PACKSHOT_FILL - 1) * max(box.w, box.h) / 2
    x0, y0 = max(0, math.floor(box.x - grow)), max(0, math.floor(box.y - grow))
    x1, y1 = min(width, math.ceil(box.x + box.w + grow)), min(height, math.ceil(box.y + box.h + grow))
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0, score=box.score)


def photo_boxes(info: ImageInfo, crop: CropChoice, *, version: ModelVersion | None) -> BoxedPhoto:
    """The photo to search with, the proposed boxes and which one was used (see the module's docstring).
    An explicit crop must already be checked against the photo (crop_check)."""
    shown = _proposal_rgb(info)  # read once: the proposer and the packshot test both look at it
    try:
        boxes = boxes_propose(info, version, shown)
    except Exception:  # a localiser that fails must not fail the search: search without boxes
        logger.exception("Proposing item boxes failed (model version %s)", getattr(version, "pk", None))
        boxes, failed = [], True
    else:
        failed = False
    if isinstance(crop, Crop):
        chosen = _same_box(crop, boxes)
        # Only a box Lookalike proposed has its item cut out: a box the shopper drew is searched as drawn
        # (on shopper photos of two 1,000-product catalogues, cutting out lowered a drawn box's hit@1 by
        # 0.01-0.03 and raised a proposed box's by 0.02-0.03: a drawn box is tight and holds no props).
        return BoxedPhoto(
            crop_apply(info, crop, version if chosen is not None else None), boxes, crop, chosen, None, crop
        )
    if crop == NONE:
        return BoxedPhoto(info, boxes, None, None, None, crop)
    if not boxes:
        return BoxedPhoto(info, [], None, None, NO_PROPOSALS if failed else NO_ITEM, crop)
    best = boxes[0]
    box = Crop(best.x, best.y, best.w, best.h)
    if _frames(version) and packshot_like(shown):
        # One item on a clean backdrop: framing crops the photo to that item itself, exactly as it
        # did the catalogue's own photos, so the whole photo is searched and a second crop cannot shift
        # what the model sees. The results are for the item's box all the same.
        return BoxedPhoto(info, boxes, box, 0, None, crop)
    return BoxedPhoto(crop_apply(info, box, version), boxes, box, 0, None, crop)


def boxes_json(boxed: BoxedPhoto) -> dict:
    """The API's account of the boxes: proposed (best first), the one the results are for (null: the
    whole photo), and a notice (null when the results are for what was asked)."""
    return {
        "boxes": [{"x": b.x, "y": b.y, "w": b.w, "h": b.h, "score": b.score} for b in boxed.boxes],
        "box": dataclasses.asdict(boxed.box) if boxed.box is not None else None,
        "notice": boxed.notice,
    }


@dataclass(frozen=True)
class BoxChoice:
    """A proposed box as the search page draws it: position in % of the photo, and its number."""

    number: int
    crop: str  # x,y,w,h
    style: str  # left/top/width/height in % of the photo
    chosen: bool
    w: int
    h: int


def box_choices(boxed: BoxedPhoto, *, width: int, height: int) -> list[BoxChoice]:
    return [
        BoxChoice(
            number=i + 1,
            crop=f"{b.x},{b.y},{b.w},{b.h}",
            style=_percent_style(b.x, b.y, b.w, b.h, width, height),
            chosen=i == boxed.chosen,
            w=b.w,
            h=b.h,
        )
        for i, b in enumerate(boxed.boxes)
    ]


def drawn_style(boxed: BoxedPhoto, *, width: int, height: int) -> str | None:
    """Where the searched box is when it is not one of the proposals (drawn by the shopper)."""
    if boxed.box is None or boxed.chosen is not None:
        return None
    c = boxed.box
    return _percent_style(c.x, c.y, c.w, c.h, width, height)


def _percent_style(x: int, y: int, w: int, h: int, width: int, height: int) -> str:
    return (
        f"left: {100 * x / width:.3f}%; top: {100 * y / height:.3f}%; "
        f"width: {100 * w / width:.3f}%; height: {100 * h / height:.3f}%"
    )


def _iou(a: Crop | Box, b: Crop | Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    return inter / max(1, a.w * a.h + b.w * b.h - inter)


def _same_box(crop: Crop, boxes: list[Box]) -> int | None:
    """Which proposed box the crop is (SAME_BOX_IOU or more overlap), if any: the page sends a box back
    in the pixels of the copy it carries, which for a large photo is smaller."""
    best, best_iou = None, SAME_BOX_IOU
    for i, b in enumerate(boxes):
        iou = _iou(crop, b)
        if iou >= best_iou:
            best, best_iou = i, iou
    return best


def _box_scaled(box: Box, sx: float, sy: float, width: int, height: int) -> Box | None:
    """The box scaled by (sx, sy) and clipped to a width x height photo; None when nothing is left."""
    x0, y0 = max(0, math.floor(box.x * sx)), max(0, math.floor(box.y * sy))
    x1, y1 = min(width, math.ceil((box.x + box.w) * sx)), min(height, math.ceil((box.y + box.h) * sy))
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x=int(x0), y=int(y0), w=int(x1 - x0), h=int(y1 - y0), score=round(float(box.score), 3))
