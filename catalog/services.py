"""Writing the catalogue: importers for Fashion-MNIST and for a user's CSV."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils.text import slugify
from PIL import Image

from . import fashion_mnist
from .images import InvalidImage, read_image
from .models import Category, Product, ProductImage, product_image_path
from .signals import images_bulk_added

Progress = Callable[[int], None]  # called with the number of items just finished
CHUNK = 2000


def category_get_or_create(*, name: str) -> Category:
    name = " ".join(name.split())
    category = Category.objects.filter(name__iexact=name).first()
    if category:
        return category
    base = slugify(name)[: Category._meta.get_field("slug").max_length - 10] or "category"
    slug, n = base, 1
    while Category.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return Category.objects.create(name=name, slug=slug)


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _fake_price(index: int) -> Decimal:
    # Deterministic demo prices between 5 and 200 so price filters have something to filter.
    return Decimal(500 + (index * 7919) % 19500) / 100


@dataclass
class FashionMnistImport:
    created: int = 0
    skipped: int = 0
    notices: list[str] = field(default_factory=list)  # from images_bulk_added receivers (e.g. indexing queued)


def fashion_mnist_import(
    *,
    split: str = "train",
    limit: int | None = None,
    directory: str | None = None,
    progress: Progress | None = None,
) -> FashionMnistImport:
    """Import Fashion-MNIST images as products (one per image, category = class name).

    SKUs are `FM-<split>-<index>`, so running it again imports only what is missing. Products are
    written in bulk, CHUNK at a time, each chunk in one transaction. Bulk writes send no post_save:
    when images were added, `catalog.signals.images_bulk_added` says so (search then indexes them).
    """
    images, labels = fashion_mnist.load_split(split, directory)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive. Received: limit={limit}")
        images, labels = images[:limit], labels[:limit]
    categories = [category_get_or_create(name=name) for name in fashion_mnist.CLASS_NAMES]
    prefix = f"FM-{split}-"
    existing = set(Product.objects.filter(sku__startswith=prefix).values_list("sku", flat=True))
    result = FashionMnistImport()
    todo = []
    for index in range(len(images)):
        if f"{prefix}{index:05d}" in existing:
            result.skipped += 1
        else:
            todo.append(index)
    if progress and result.skipped:
        progress(result.skipped)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        products, image_rows = [], []
        for index in chunk:
            label = int(labels[index])
            products.append(
                Product(
                    sku=f"{prefix}{index:05d}",
                    title=f"{fashion_mnist.CLASS_NAMES[label]} #{index}",
                    description=f"Fashion-MNIST {split} image {index}.",
                    price=_fake_price(index),
                    category=categories[label],
                )
            )
            data = _png_bytes(images[index])
            image = ProductImage(width=28, height=28, sha256=hashlib.sha256(data).hexdigest(), position=0)
            image.image.name = default_storage.save(product_image_path(image, "x.png"), ContentFile(data))
            image_rows.append(image)
        try:
            with transaction.atomic():
                Product.objects.bulk_create(products)
                for product, image in zip(products, image_rows, strict=True):
                    image.product = product
                ProductImage.objects.bulk_create(image_rows)
        except BaseException:
            for image in image_rows:
                default_storage.delete(image.image.name)
            raise
        result.created += len(chunk)
        if progress:
            progress(len(chunk))
    if result.created:
        responses = images_bulk_added.send(sender=ProductImage, count=result.created)
        result.notices = [notice for _, notice in responses if notice]
    return result


# --- a user's own catalogue -------------------------------------------------------------------

CSV_COLUMNS = ("sku", "title", "category", "price", "description", "images")


@dataclass
class RowError:
    line: int
    sku: str
    reason: str


@dataclass
class CsvImport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # notices: same image bytes as another product


@dataclass
class _Row:
    line: int
    sku: str
    title: str
    category: str
    price: Decimal | None
    description: str
    images: list[tuple[bytes, str, object]]  # (bytes, extension, ImageInfo)


def _parse_price(raw: str) -> Decimal | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        price = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"bad price {raw!r}: not a number") from exc
    if not price.is_finite() or price < 0 or price >= Decimal("1e8"):
        raise ValueError(f"bad price {raw!r}: must be between 0 and 99999999.99")
    return price.quantize(Decimal("0.01"))


def _column_limits() -> dict[str, int]:
    """Each column's limit, from the model field it is written to: checked before any write."""
    return {
        "sku": Product._meta.get_field("sku").max_length,
        "title": Product._meta.get_field("title").max_length,
        "category": Category._meta.get_field("name").max_length,
    }


def _validate_row(line: int, raw: dict, images_dir: Path) -> _Row:
    for column, value in raw.items():
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL stores no NUL in text
            raise ValueError(f"{column or 'a column'} contains a NUL character")
    sku = (raw.get("sku") or "").strip()
    if not sku:
        raise ValueError("missing sku")
    title = (raw.get("title") or "").strip()
    if not title:
        raise ValueError("missing title")
    category = " ".join((raw.get("category") or "").split())
    if not category:
        raise ValueError("missing category")
    for column, value in (("sku", sku), ("title", title), ("category", category)):
        limit = _column_limits()[column]
        if len(value) > limit:
            raise ValueError(f"{column} is {len(value):,} characters long; at most {limit} fit")
    price = _parse_price(raw.get("price") or "")
    paths = [p.strip() for p in (raw.get("images") or "").split("|") if p.strip()]
    if not paths:
        raise ValueError("no images")
    images = []
    root = images_dir.resolve()
    for rel in paths:
        path = (root / rel).resolve()
        if root not in path.parents:
            raise ValueError(f"image path {rel!r} leaves the images folder")
        if not path.is_file():
            raise ValueError(f"unknown image path {rel!r}")
        data = path.read_bytes()
        try:
            info = read_image(data)
        except InvalidImage as exc:
            raise ValueError(f"unreadable image {rel!r}: {exc}") from exc
        images.append((data, info.extension, info))
    return _Row(line, sku, title, category, price, (raw.get("description") or "").strip(), images)


def _write_row(row: _Row) -> str:
    """Create or update one product and its images atomically; returns created/updated/unchanged."""
    written: list[str] = []
    try:
        with transaction.atomic():
            category = category_get_or_create(name=row.category)
            product, created = Product.objects.select_for_update().get_or_create(
                sku=row.sku,
                defaults={"title": row.title, "category": category, "price": row.price, "description": row.description},
            )
            new_sums = [info.sha256 for _, _, info in row.images]
            if not created:
                old_sums = list(product.images.order_by("position", "id").values_list("sha256", flat=True))
                same_fields = (product.title, product.category_id, product.price, product.description) == (
                    row.title,
                    category.id,
                    row.price,
                    row.description,
                )
                if same_fields and old_sums == new_sums:
                    return "unchanged"
                product.title, product.category, product.price = row.title, category, row.price
                product.description = row.description
                product.save()
                if old_sums == new_sums:
                    return "updated"
                old_files = [img.image.name for img in product.images.all()]
                product.images.all().delete()
                transaction.on_commit(lambda: [default_storage.delete(name) for name in old_files])
            for position, (data, extension, info) in enumerate(row.images):
                image = ProductImage(product=product, position=position, sha256=info.sha256)
                image.image.save(f"upload{extension}", ContentFile(data), save=False)
                written.append(image.image.name)
                image.save()
            return "created" if created else "updated"
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise


def catalog_import_csv(*, rows: Iterable[str], images_dir: Path, progress: Progress | None = None) -> CsvImport:
    """Import products from CSV lines (columns: sku,title,category,price,description,images).

    Each good row is written in its own transaction (create, or update by sku); each bad row is
    reported with its line number and reason and leaves nothing behind.
    """
    reader = csv.DictReader(rows)
    missing = [c for c in ("sku", "title", "category", "images") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"The CSV header lacks column(s): {', '.join(missing)}. Expected: {', '.join(CSV_COLUMNS)}.")
    report = CsvImport()
    seen: dict[str, int] = {}  # sku -> the line that first had it
    for raw in reader:
        line = reader.line_num
        sku = (raw.get("sku") or "").strip() if isinstance(raw.get("sku"), str) else ""
        try:
            if sku in seen:
                raise ValueError(f"sku {sku!r} repeats line {seen[sku]} of this file; the first row is kept")
            row = _validate_row(line, raw, images_dir)
        except ValueError as exc:
            report.errors.append(RowError(line, sku, str(exc)))
        else:
            seen[row.sku] = line
            sums = [info.sha256 for _, _, info in row.images]
            for other in (
                Product.objects.filter(images__sha256__in=sums)
                .exclude(sku=row.sku)
                .values_list("sku", flat=True)
                .distinct()
            ):
                report.duplicates.append(f"line {line}: {row.sku} has the same image as {other}")
            try:
                outcome = _write_row(row)
            except DatabaseError as exc:  # a limit checked nowhere above: this row only, the rest go on
                report.errors.append(RowError(line, row.sku, f"not written: {exc}".strip()[:500]))
            else:
                setattr(report, outcome, getattr(report, outcome) + 1)
        if progress:
            progress(1)
    return report
