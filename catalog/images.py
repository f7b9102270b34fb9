"""Reading image bytes from strangers: the one decoder, and the one place that decides what is an image.

Used by the CSV importer, the admin's image upload, the photo search, and (through
ml.preprocess) training and indexing, so the same file always becomes the same pixels: the first
frame, EXIF orientation applied, transparency composited on white, palette / CMYK / 16-bit / grey
images as 8-bit RGB. Everything that is not a complete PNG, JPEG, WebP or GIF within the pixel limit
raises InvalidImage with a reason a person can act on.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}
_EXIF_ORIENTATION = 0x0112
_TURNED = {5, 6, 7, 8}  # orientations that swap width and height
_TRANSPOSED = {2, 3, 4, 5, 6, 7, 8}  # orientations exif_transpose turns or mirrors


class InvalidImage(ValueError):
    """The bytes are not an image Lookalike accepts; str(exc) says why."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str
    image: Image.Image  # decoded, EXIF-oriented, first frame, RGB
    data: bytes = field(default=b"", repr=False)  # the file itself (models decode it their own way)

    @property
    def extension(self) -> str:
        return ALLOWED_FORMATS[self.format]


def image_to_rgb(img: Image.Image) -> Image.Image:
    """Any mode (palette, alpha, CMYK, 16-bit, ...) to 8-bit RGB; transparency becomes white."""
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        # 16-bit (or 32-bit) grey: the top 8 bits, as every viewer shows it.
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(wide / 257.0, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in {"RGBA", "LA", "PA"}:
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img.convert("RGBA"))
        return background.convert("RGB")
    return img.convert("RGB")


# Where Pillow's getexif() looks for an orientation (EXIF, PNG's text form of it, XMP); an image
# with none of them is upright, and skipping the parse is a third of a small PNG's decode.
_ORIENTATION_SOURCES = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _orientation(img: Image.Image) -> int:
    if not any(key in img.info for key in _ORIENTATION_SOURCES):
        return 1
    return img.getexif().get(_EXIF_ORIENTATION, 1)


def read_image(data: bytes, *, max_bytes: int | None = None, draft: int | None = None) -> ImageInfo:
    """Validate and decode image bytes. Raises InvalidImage; never returns a half-decoded image.

    draft: the decoded image may be smaller, down to about this many pixels on its shorter side
    (a JPEG is then decoded at 1/2, 1/4 or 1/8 scale, several times faster). Models ask for it
    (ml.preprocess), always with the same size for one model, so they still see the same pixels
    for the same file; width and height stay those of the full image.
    """
    if not data:
        raise InvalidImage("The file is empty.")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidImage(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit: treat that as the bomb it may be.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(f"{fmt or 'This'} images are not accepted; use PNG, JPEG, WebP or GIF.")
                probe.verify()
            img = Image.open(io.BytesIO(data))
            full_size = img.size
            img.seek(0)  # animated GIF/WebP: the first frame
            if draft and img.format == "JPEG":
                img.draft(img.mode if img.mode in ("RGB", "L") else None, (draft, draft))
            img.load()
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage(f"The image has too many pixels to decode safely ({exc}).") from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage("The file is not an image (PNG, JPEG, WebP or GIF).") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"The image is damaged or incomplete ({exc}).") from exc
    if img.width < 1 or img.height < 1:
        raise InvalidImage("The image has no pixels.")
    orientation = _orientation(img)
    if orientation in _TRANSPOSED:
        img = ImageOps.exif_transpose(img) or img
    # else exif_transpose would only return a copy of the same pixels (a share of indexing's decode)
    width, height = full_size if orientation not in _TURNED else full_size[::-1]
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        image=image_to_rgb(img),
        data=data,
    )
