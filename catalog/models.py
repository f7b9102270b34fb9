from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import PurePosixPath

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, GistIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Prefetch
from django.db.models.functions import Upper
from django.urls import reverse
from PIL import Image


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class ProductQuerySet(models.QuerySet):
    def browsable(self) -> ProductQuerySet:
        """Products with what a listing shows: category and images, in a fixed number of queries."""
        return self.select_related("category").prefetch_related(
            Prefetch("images", queryset=ProductImage.objects.order_by("position", "id"))
        )


class Product(models.Model):
    sku = models.CharField("SKU", max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Weighted words of title and SKU (A), category name (B) and description (C), written by a
    # database trigger on every insert or update (and when a category is renamed): see
    # catalog/migrations/0002_product_search.py. A GeneratedField cannot read the category's name.
    search_vector = SearchVectorField(null=True, editable=False)
    # The distinct words (runs of letters, lower case) of title, category name and description, written
    # by the same trigger: what the product adds to the spelling vocabulary (SearchWord). Kept on the row
    # so that the vocabulary's counts can drop exactly the words a product had when it is edited, its
    # category renamed, or deleted.
    search_words = ArrayField(models.TextField(), null=True, editable=False)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["category", "id"]),
            GinIndex(fields=["search_vector"], name="catalog_product_search_gin"),
            GinIndex(fields=["title"], opclasses=["gin_trgm_ops"], name="catalog_product_title_trgm"),
            models.Index(Upper("sku"), name="catalog_product_sku_upper"),  # a SKU typed in any case
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.sku})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:product_detail", args=[self.pk])

    @property
    def primary_image(self) -> ProductImage | None:
        # Uses the prefetched, ordered images when the queryset came from browsable().
        images = list(self.images.all())
        return images[0] if images else None


class SearchWord(models.Model):
    """A word of the catalogue (in the title, category name, description or SKU of some product) and how
    many products have it: the dictionary that typo correction reads (catalog/spelling.py). Only
    database triggers write it, as products are added, edited or deleted (catalog/migrations/0004_search_words.py)."""

    word = models.TextField(primary_key=True)  # lower case, letters only, 2 to 64 of them
    stem = models.TextField(null=True)  # noqa: DJ001 - None (a stop word) differs from ""; its English full-text lexeme ("dresses" -> "dress"); None: a stop word
    products = models.IntegerField(default=0)  # products that have it in their text: a word typos are corrected to
    skus = models.IntegerField(default=0)  # products whose SKU has it ("drs" of "DRS-0012"): known, never a correction

    class Meta:
        indexes = [
            GistIndex(
                fields=["word"], opclasses=["gist_trgm_ops"], name="catalog_searchword_trgm"
            ),  # nearest by trigrams
            models.Index(fields=["stem"], name="catalog_searchword_stem"),
        ]

    def __str__(self) -> str:
        return f"{self.word} ({self.products})"


def product_image_path(instance: ProductImage, filename: str) -> str:
    """Stored names are generated: the uploader's filename never reaches the disk."""
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in {".png", ".jpg", ".jpeg", ".webp", ".gif"}:
        suffix = ".png"
    name = uuid.uuid4().hex
    return f"products/{name[:2]}/{name}{suffix}"


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to=product_image_path, width_field="width", height_field="height")
    width = models.PositiveIntegerField(default=0, editable=False)
    height = models.PositiveIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, db_index=True, editable=False)
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id", "position", "id"]

    def __str__(self) -> str:
        return f"Image {self.position} of {self.product_id}"

    def save(self, *args, **kwargs):
        # Importers set these from bytes they already validated; other writers get them filled in.
        if self.image and (not self.sha256 or not self.width or not self.height):
            self.image.open("rb")
            self.image.seek(0)
            data = self.image.read()
            self.image.seek(0)
            self.sha256 = self.sha256 or hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as img:
                self.width, self.height = img.size
        super().save(*args, **kwargs)

    @property
    def is_small(self) -> bool:
        """Tiny images (Fashion-MNIST is 28x28) are upscaled with pixelated rendering."""
        return 0 < max(self.width, self.height) <= 64
