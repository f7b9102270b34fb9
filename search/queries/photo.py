"""Photo search: the uploaded photo through the active model (the one place a query runs it), then
the nearest products, within the words and filters when given."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from catalog.images import InvalidImage
from catalog.keyword_search import Match, product_keyword_match
from catalog.models import Category
from ml.artifacts import ModelLoadError
from ml.models import ModelVersion
from ml.runtime import embedder_for

from ..serving.versions import active_model_version, version_storage
from .hybrid import keyword_neighbours
from .nearest import nearest_products
from .similar import SimilarProduct, products_with_images
from .weights import PHOTO, candidates, query_vector

if TYPE_CHECKING:
    from catalog.images import ImageInfo

__all__ = [
    "CategoryGuess",
    "ModelUnavailable",
    "NoActiveModel",
    "PhotoRefused",
    "PhotoSearch",
    "SearchUnavailable",
    "photo_search",
]

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait (Retry-After) when photo search has no usable model.
MODEL_RETRY_AFTER = 60


class SearchUnavailable(Exception):
    """Searching is not possible right now; str(exc) is a message for people (never a path or an
    exception's text: the cause is logged for the operator)."""

    retry_after = MODEL_RETRY_AFTER


class NoActiveModel(SearchUnavailable):
    pass


class ModelUnavailable(SearchUnavailable):
    """The active model's files could not be loaded, or the model failed to run."""


class PhotoRefused(ValueError):
    """The model's decoder refused the photo; str(exc) is the upload gate's reason (catalog.images)."""


NO_MODEL_MESSAGE = "Photo search is not available yet: no model is active."
MODEL_LOAD_MESSAGE = "Photo search is unavailable right now: the model could not be loaded. Please try again later."
MODEL_FAILED_MESSAGE = "Photo search is unavailable right now: the model failed to run. Please try again later."


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
    model_version: ModelVersion | None = None,
) -> PhotoSearch:
    """The k products most similar to an uploaded photo (validated by catalog.images.read_image; a
    crop is already applied), optionally within a category, a price range and the products matching
    the words `query` (keyword_neighbours), plus the model's category guess when it has a classifier
    head. The model decodes and frames the file exactly as indexing does (ml.preprocess).
    model_version: the active version when the caller has read it already (None: read it here).
    Raises NoActiveModel or ModelUnavailable (both SearchUnavailable) when there is no usable model,
    PhotoRefused when the model's decoder refuses the photo; anything else is a bug and propagates.
    """
    version = model_version if model_version is not None else active_model_version()
    if version is None:
        raise NoActiveModel(NO_MODEL_MESSAGE)
    try:
        embedder = embedder_for(version)
    except (ModelLoadError, ImportError) as exc:  # missing or unreadable files, or TensorFlow failing to import
        logger.exception("Photo search: model version %s could not be loaded", version.pk)
        raise ModelUnavailable(MODEL_LOAD_MESSAGE) from exc
    import tensorflow as tf  # already loaded with the model; only its error classes are needed here

    try:
        vector, raw_guess = embedder.embed_and_guess_bytes(image.data)  # one model call for both
    except InvalidImage as exc:  # the same gate as the upload form, reached through the model's decoder
        raise PhotoRefused(str(exc)) from exc
    except tf.errors.OpError as exc:  # a model that loads but whose graph cannot run
        logger.exception("Photo search: model version %s failed to run", version.pk)
        raise ModelUnavailable(MODEL_FAILED_MESSAGE) from exc
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
        neighbours = keyword_neighbours(
            model_version_id=version.pk, vector=vector, k=k, products=words.products, **filters
        )
    else:
        wide = candidates(k, PHOTO, filters["rank_vector"])
        neighbours = nearest_products(model_version_id=version.pk, vector=vector, k=wide, **filters)[:k]
    return PhotoSearch(model_version=version, items=products_with_images(neighbours), guess=guess, match=match)
