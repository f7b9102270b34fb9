"""The part of a search photo to search with: `crop=x,y,w,h` in pixels of the uploaded photo as it is
shown (after its EXIF orientation), which is what the page's crop box sends."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CROP = re.compile(r"^\s*(\d{1,6})\s*,\s*(\d{1,6})\s*,\s*(\d{1,6})\s*,\s*(\d{1,6})\s*$")


class BadCrop(ValueError):
    """str(exc) says what is wrong with the crop, for people."""


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    w: int
    h: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), as PIL's Image.crop takes it."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


def crop_parse(raw: str) -> Crop:
    """Parse "x,y,w,h" (whole, non-negative numbers; w and h at least 1). Raises BadCrop."""
    match = _CROP.match(raw)
    if match is None:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise BadCrop(
            f"Give the crop as four whole numbers x,y,w,h in pixels of the photo, like 10,20,200,150. Received: {shown!r}"
        )
    crop = Crop(*(int(v) for v in match.groups()))
    if crop.w < 1 or crop.h < 1:
        raise BadCrop(f"The crop must be at least 1 pixel wide and high. Received: width {crop.w}, height {crop.h}.")
    return crop


def crop_check(crop: Crop, *, width: int, height: int) -> None:
    """Raises BadCrop when the crop reaches outside a width × height photo."""
    if crop.x + crop.w > width or crop.y + crop.h > height:
        raise BadCrop(
            f"The crop {crop} (x,y,w,h) reaches outside the photo, which is {width}×{height} pixels: "
            f"it ends at x={crop.x + crop.w}, y={crop.y + crop.h}."
        )
