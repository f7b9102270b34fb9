"""Reading image bytes from strangers: one place that decides what is an image and what is not.

Used by the CSV importer, the admin's image upload and the photo search. Everything that is not a
complete PNG, JPEG, WebP or GIF within the pixel limit raises InvalidImage with a reason a person
can act on.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}


class InvalidImage(ValueError):
    """The bytes are not an image Lookalike accepts; str(exc) says why."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str
    image: Image.Image  # decoded, EXIF-oriented, first frame, RGB

    @property
    def extension(self) -> str:
        return ALLOWED_FORMATS[self.format]


def image_to_rgb(img: Image.Image) -> Image.Image:
    """Any mode (palette, alpha, CMYK, 16-bit, ...) to 8-bit RGB; transparency becomes white."""
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in {"RGBA", "LA", "PA"}:
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img.convert("RGBA"))
        return background.convert("RGB")
    return img.convert("RGB")


def read_image(data: bytes, *, max_bytes: int | None = None) -> ImageInfo:
    """Validate and decode image bytes. Raises InvalidImage; never returns a half-decoded image."""
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
            img.seek(0)  # animated GIF/WebP: the first frame
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
    img = ImageOps.exif_transpose(img) or img
    return ImageInfo(
        format=fmt,
        width=img.width,
        height=img.height,
        sha256=hashlib.sha256(data).hexdigest(),
        image=image_to_rgb(img),
    )
