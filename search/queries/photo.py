"""Photo search: the uploaded photo through the active model (the one place a query runs it), then
the nearest products, within the words and filters when given."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from catalog.keyword_search import Match, product_keyword_match
from catalog.models import Category
from ml.models import ModelVersion
from ml.runtime import embedder_for

from ..serving.versions import active_model_version, version_storage
from .hybrid import keyword_neighbours
from .nearest import nearest_products
from .similar import SimilarProduct, products_with_images
from .weights import PHOTO, candidates, query_vector

if TYPE_CHECKING:
    from catalog.images import ImageInfo

__all__ = ["CategoryGuess", "ModelUnavailable", "NoActiveModel", "PhotoSearch", "SearchUnavailable", "photo_search"]

logger = logging.getLogger(__name__)


class SearchUnavailable(Exception):
    """Searching is not possible right now; str(exc) is a message for people."""


class NoActiveModel(SearchUnavailable):
    pass


class ModelUnavailable(SearchUnavailable):
    """The active model's files could not be loaded."""



@dataclass(frozen=True)
class CategoryGuess:
    label: str
    probability: float
    category: Category | None  # the catalogue's category of that name, when there is one

    @property
    def percent(self) -> int:
        return round(100 * self.probability)


@dataclass
class PhotoSearch:
    model_version: ModelVersion
    items: list[SimilarProduct]
    guess: CategoryGuess | None
    match: str = Match.ALL  # how the words matched (catalog.keyword_search.Match)


def photo_search(
    *,
    image: ImageInfo,
    k: int = 8,
    category: Category | None = None,
    query: str = "",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> PhotoSearch:
    """The k products most similar to an uploaded photo (validated by catalog.images.read_image; a
    crop is already applied), optionally within a category, a price range and the products matching
    the words `query` (keyword_neighbours), plus the model's category guess when it has a classifier
    head. The model decodes and frames the file exactly as indexing does (ml.preprocess).
    Raises NoActiveModel or ModelUnavailable (both SearchUnavailable).
    """
    version = active_model_version()
    if version is None:
        raise NoActiveModel("Photo search is not available yet: no model is active.")
    try:
        embedder = embedder_for(version)
    except Exception as exc:  # ml.inference.ModelLoadError, or TensorFlow failing to import
        raise ModelUnavailable(f"Photo search is unavailable: the model could not be loaded ({exc}).") from exc
    try:
        vector, raw_guess = embedder.embed_and_guess_bytes(image.data)  # one model call for both
    except Exception as exc:  # a model that loads but cannot run: a message, not a 500
        logger.exception("Model version %s failed on a search photo", version.pk)
        raise ModelUnavailable(f"Photo search is unavailable: the model failed on this photo ({exc}).") from exc
    guess = None
    if raw_guess is not None:
        label, probability = raw_guess
        guess = CategoryGuess(
            label=label, probability=float(probability), category=Category.objects.filter(name__iexact=label).first()
        )
    filters = {
        "category_id": category.pk if category else None,
        "min_price": min_price,
        "max_price": max_price,
        "storage": version_storage(model_version=version),
        "rank_vector": query_vector(vector, version.metrics.get("vector_parts"), PHOTO),
    }
    match = Match.ALL
    if query.strip():
        words = product_keyword_match(query=query, category=category, min_price=min_price, max_price=max_price)
        match = words.match
        neighbours = keyword_neighbours(model_version_id=version.pk, vector=vector, k=k, products=words.products, **filters)
    else:
        wide = candidates(k, PHOTO, filters["rank_vector"])
        neighbours = nearest_products(model_version_id=version.pk, vector=vector, k=wide, **filters)[:k]
    return PhotoSearch(model_version=version, items=products_with_images(neighbours), guess=guess, match=match)

