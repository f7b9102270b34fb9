"""Test data: tiny generated images (coloured shapes) and products that use them."""

from __future__ import annotations

import io
import itertools
import shutil
import tempfile

from django.core.files.base import ContentFile
from django.test import override_settings
from PIL import Image, ImageDraw

from catalog.models import Category, Product, ProductImage

_counter = itertools.count(1)
SHAPES = ("square", "circle", "triangle", "bar")


def shape_png(
    shape: str = "square", *, color=(220, 40, 40), size: int = 24, offset: int = 0, fmt: str = "PNG"
) -> bytes:
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    lo, hi = size // 5 + offset, size - size // 5 + offset
    if shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=color)
    elif shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=color)
    elif shape == "triangle":
        draw.polygon([(size // 2 + offset, lo), (lo, hi), (hi, hi)], fill=color)
    elif shape == "bar":
        draw.rectangle([lo, size // 2 - 2 + offset, hi, size // 2 + 2 + offset], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def category_create(name: str | None = None) -> Category:
    name = name or f"Category {next(_counter)}"
    return Category.objects.get_or_create(
        name=name, defaults={"slug": name.lower().replace(" ", "-").replace("/", "-")}
    )[0]


def product_create(*, category: Category | None = None, images: list[bytes] | None = None, **fields) -> Product:
    n = next(_counter)
    product = Product.objects.create(
        sku=fields.pop("sku", f"SKU-{n:05d}"),
        title=fields.pop("title", f"Product {n}"),
        category=category or category_create(),
        price=fields.pop("price", 10),
        **fields,
    )
    for position, data in enumerate(images if images is not None else [shape_png()]):
        image = ProductImage(product=product, position=position)
        image.image.save(f"test{n}.png", ContentFile(data), save=False)
        image.save()
    return product


class PrivateMediaRootMixin:
    """A test class with its own MEDIA_ROOT, so "nothing was written" cannot be upset by another
    run's files (parallel test runs share var/test-media)."""

    @classmethod
    def setUpClass(cls):
        media = tempfile.mkdtemp(prefix="lookalike-media-")
        cls.addClassCleanup(shutil.rmtree, media, ignore_errors=True)
        cls.enterClassContext(override_settings(MEDIA_ROOT=media))
        super().setUpClass()
