"""Reading vectors: which version serves, nearest products by L2 distance, similar items, photo
search, index coverage."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Subquery
from pgvector.django import L2Distance

from catalog.keyword_search import Match, product_keyword_match
from catalog.models import Category, Product, ProductImage
from ml.models import ModelVersion
from ml.runtime import embedder_for

from .models import EmbeddingFailure, ImageEmbedding, IndexJob, ServingState
from .query_weights import PHOTO, SIMILAR, query_vector
from .storage import STORAGES, VECTOR, VectorStorage, vector_array

if TYPE_CHECKING:
    from catalog.images import ImageInfo

logger = logging.getLogger(__name__)


class SearchUnavailable(Exception):
    """Searching is not possible right now; str(exc) is a message for people."""


class NoActiveModel(SearchUnavailable):
    pass


class ModelUnavailable(SearchUnavailable):
    """The active model's files could not be loaded."""


def hnsw_index_name(model_version_id: int) -> str:
    return f"search_emb_hnsw_v{int(model_version_id)}"


def active_model_version() -> ModelVersion | None:
    """The version every query uses right now (read it once per request and pass it on), with its
    vector storage read in the same query (version_storage)."""
    return ModelVersion.objects.filter(serving__is_active=True).annotate(vector_storage_name=F("serving__storage")).first()


def version_storage(*, model_version: ModelVersion | int) -> VectorStorage:
    """How the version's vectors are stored (search.storage). Free for a version read by
    active_model_version; one query otherwise. A version without a serving state has its vectors,
    if any, in the float32 column: that is where they were before halfvec."""
    if isinstance(model_version, ModelVersion):
        name = getattr(model_version, "vector_storage_name", None)
        if name is not None:
            return STORAGES[name]
        model_version = model_version.pk
    state = ServingState.objects.filter(model_version_id=model_version).only("storage").first()
    return state.vector_storage if state is not None else VECTOR


def model_version_is_active(*, model_version: ModelVersion) -> bool:
    return ServingState.objects.filter(model_version=model_version, is_active=True).exists()


def model_versions_written() -> QuerySet[ModelVersion]:
    """The succeeded versions new images must be embedded for: the active one and any being indexed."""
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED)
        .filter(Q(serving__is_active=True) | Q(index_jobs__status__in=IndexJob.UNFINISHED))
        .distinct()
    )


# --- nearest neighbours -------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    product_id: int
    image_id: int
    distance: float


class AnyOf(Func):
    """`column = ANY(ARRAY(subquery))`, a condition: the subquery runs once, as an InitPlan, and its
    ids are looked up in the column's index."""

    template = "%(expressions)s))"
    arg_joiner = " = ANY(ARRAY("  # column, subquery
    output_field = BooleanField()

    def __init__(self, column: str, queryset: QuerySet):
        super().__init__(F(column), Subquery(queryset))


def nearest_products(
    *,
    model_version_id: int,
    vector: Sequence[float] | np.ndarray,
    k: int,
    exclude_product_id: int | None = None,
    category_id: int | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    products: QuerySet[Product] | Sequence[int] | None = None,
    exact: bool = False,
    max_scan_tuples: int | None = None,
    storage: VectorStorage | None = None,
    rank_vector: Sequence[float] | np.ndarray | None = None,
) -> list[Neighbour]:
    """The k products nearest to `vector` under one model version, closest first, each product once
    (by its closest image).

    Uses the version's partial HNSW index: the ORDER BY casts the version's column to vector(D) or
    halfvec(D) (its `storage`, looked up when not given) and filters by model_version_id exactly as
    the index does, and pgvector 0.8's iterative scan (relaxed_order) keeps filtered queries
    returning k rows. `exact=True` orders by the uncast column, which no index matches: a sequential
    scan, for checking recall. `products` (a queryset, run as a
    subquery, or ids) keeps only those products: a filter inside the vector query, like category.
    `max_scan_tuples` bounds how far the iterative scan walks (pgvector's default is 20,000).
    `rank_vector` (search.query_weights): rank by the distance to it instead, and still report the
    distance to `vector`.
    """
    vector = np.asarray(vector, dtype=np.float32)
    dim = int(vector.shape[0])
    rows = ImageEmbedding.objects.filter(model_version_id=model_version_id)
    if exclude_product_id is not None:
        rows = rows.exclude(product_id=exclude_product_id)
    if category_id is not None:
        rows = rows.filter(category_id=category_id)
    if min_price is not None:
        rows = rows.filter(price__gte=min_price)
    if max_price is not None:
        rows = rows.filter(price__lte=max_price)
    if isinstance(products, QuerySet) and exact:
        # product_id = ANY(ARRAY(subquery)): the matches are read once and their rows fetched through
        # the product index, where IN (subquery) hash-joins them against a scan of every vector of the
        # version (at 60k, 6,000 matches: 16 ms against 35).
        rows = rows.filter(AnyOf("product_id", products.order_by().values("pk")))
    elif products is not None:
        rows = rows.filter(product_id__in=products.order_by().values("pk") if isinstance(products, QuerySet) else list(products))
    if storage is None:
        storage = version_storage(model_version=model_version_id)
    column = F(storage.column) if exact else storage.cast(dim)
    if rank_vector is None:
        rows = rows.annotate(distance=L2Distance(column, vector)).order_by("distance")
        columns = ("product_id", "image_id", "distance", "distance")
    else:
        rows = rows.annotate(rank=L2Distance(column, np.asarray(rank_vector, dtype=np.float32)),
                             distance=L2Distance(F(storage.column), vector)).order_by("rank")
        columns = ("product_id", "image_id", "rank", "distance")
    limit = k * 2  # most products have one image; a product's extra images may crowd others out
    alias = rows.db  # the primary, or the request's read replica (config/replicas.py): the SET LOCAL goes with it
    with transaction.atomic(using=alias, savepoint=False):
        with connections[alias].cursor() as cursor:
            # SET LOCAL, for this transaction only; set_config takes parameters, SET does not.
            cursor.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', %s, true)",
                [str(max(settings.HNSW_EF_SEARCH, min(limit, 1000)))],
            )
            if max_scan_tuples is not None:
                cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", [str(int(max_scan_tuples))])
        while True:
            found = list(rows.values_list(*columns)[:limit])
            best: dict[int, tuple[float, Neighbour]] = {}
            for product_id, image_id, rank, distance in found:
                if product_id not in best or rank < best[product_id][0]:
                    best[product_id] = (float(rank), Neighbour(product_id, image_id, float(distance)))
            if len(best) >= k or len(found) < limit:
                break
            limit *= 4
    # relaxed_order may return rows slightly out of order: sort here.
    return [n for _, n in sorted(best.values(), key=lambda r: (r[0], r[1].product_id))[:k]]


# --- similar items on a product page ------------------------------------------------------------


@dataclass(frozen=True)
class SimilarProduct:
    product: Product
    distance: float
    image: ProductImage | None

    @property
    def image_url(self) -> str:
        return self.image.image.url if self.image else ""


@dataclass(frozen=True)
class IndexProgress:
    done: int
    total: int

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


@dataclass
class SimilarItems:
    """What the "Similar items" section shows: `state` is one of the constants below."""

    NO_MODEL = "no_model"
    NOT_INDEXED = "not_indexed"
    NO_IMAGES = "no_images"
    READY = "ready"

    state: str
    items: list[SimilarProduct] = field(default_factory=list)
    model_version: ModelVersion | None = None
    progress: IndexProgress | None = None  # when not indexed and a reindex job is running

    @property
    def is_ready(self) -> bool:
        return self.state == self.READY


def _products_with_images(neighbours: list[Neighbour]) -> list[SimilarProduct]:
    products = Product.objects.browsable().in_bulk([n.product_id for n in neighbours])
    items = []
    for n in neighbours:
        product = products.get(n.product_id)
        if product is None:  # deleted between the two queries
            continue
        images = {image.pk: image for image in product.images.all()}
        items.append(SimilarProduct(product=product, distance=n.distance, image=images.get(n.image_id) or product.primary_image))
    return items


def index_job_status(job: IndexJob) -> dict:
    """A reindex job's progress as JSON-ready data: what the admin's list, version page, dashboard and
    their live updates all show."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "fraction": job.progress_fraction,
        "percent": round(100 * job.progress_fraction, 1),
        "finished": job.is_finished,
        "error": job.error,
    }


def index_progress(*, model_version: ModelVersion) -> IndexProgress | None:
    """Progress of the version's running reindex job, if one runs."""
    job = IndexJob.objects.filter(model_version=model_version, status__in=IndexJob.UNFINISHED).order_by("-id").first()
    return IndexProgress(done=job.processed, total=job.total) if job else None


def product_similar(*, product: Product, k: int = 8, same_category: bool = False, exact: bool = False) -> SimilarItems:
    """The k nearest other products to `product` (by L2 distance between images; a product counts once,
    by its closest image), optionally only in its category.

    The query is the mean of the product's photos' vectors, so every photo of it counts. Against the
    alternative (each photo queried, products by their closest photo) it measured as good on the
    photo catalogue (README, "Photo catalogue") at one index query instead of one per photo.
    Reads the active version once, so every row comes from one version. Six queries when ready
    (pinned by a test).
    """
    version = active_model_version()
    if version is None:
        return SimilarItems(state=SimilarItems.NO_MODEL)
    storage = version_storage(model_version=version)
    vectors = list(
        ImageEmbedding.objects.filter(model_version=version, product_id=product.pk).values_list(storage.column, flat=True)
    )
    vector = product_vector(vectors) if vectors else None
    if vector is None:
        if not product.images.all():
            return SimilarItems(state=SimilarItems.NO_IMAGES, model_version=version)
        return SimilarItems(
            state=SimilarItems.NOT_INDEXED, model_version=version, progress=index_progress(model_version=version)
        )
    neighbours = nearest_products(
        model_version_id=version.pk,
        vector=vector,
        k=k,
        exclude_product_id=product.pk,
        category_id=product.category_id if same_category else None,
        exact=exact,
        storage=storage,
        rank_vector=query_vector(vector, version.metrics.get("vector_parts"), SIMILAR),
    )
    return SimilarItems(state=SimilarItems.READY, items=_products_with_images(neighbours), model_version=version)


def product_vector(vectors) -> np.ndarray:
    """One query vector for a product: the mean of its photos' vectors, back to unit length when
    they have it (the normalised models' vectors do)."""
    stacked = np.asarray([vector_array(v) for v in vectors])
    mean = stacked.mean(axis=0)
    norms = np.linalg.norm(stacked, axis=1)
    if np.allclose(norms, 1.0, atol=1e-3):
        mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return mean


# --- photo search -------------------------------------------------------------------------------


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
        neighbours = nearest_products(model_version_id=version.pk, vector=vector, k=k, **filters)
    return PhotoSearch(model_version=version, items=_products_with_images(neighbours), guess=guess, match=match)


HYBRID_EXACT_BELOW = 2000
HYBRID_SCAN_TUPLES = 200  # about two ef_search passes: enough when the words agree with the photo


def keyword_neighbours(
    *,
    model_version_id: int,
    vector: Sequence[float] | np.ndarray,
    k: int,
    products: QuerySet[Product],
    exact_below: int = HYBRID_EXACT_BELOW,
    scan_tuples: int = HYBRID_SCAN_TUPLES,
    **filters,
) -> list[Neighbour]:
    """The k products among `products` (those matching a keyword search) nearest to `vector`.

    Few matches (at most `exact_below`, counted with a LIMIT): their vectors are ranked exactly,
    through the product index. Many: first the HNSW query with the keyword query as a subquery
    filter, its iterative scan bounded to `scan_tuples` rows; that finds k rows at once when the words
    agree with the photo. When they do not (a photo of a shoe, the word "dress"), the nearest matches
    lie far out in the graph, and walking there costs more (measured at 60k: 0.5 s with pgvector's
    default bound of 20,000, 15-25 ms with 2,000) than ranking the matches exactly, which is done
    instead; so the walk is kept short, and the answer is exact either way.
    """
    query = {"model_version_id": model_version_id, "vector": vector, "k": k, "products": products, **filters}
    if products.order_by().values("pk")[: exact_below + 1].count() <= exact_below:
        return nearest_products(**query, exact=True)
    found = nearest_products(**query, max_scan_tuples=scan_tuples)
    if len(found) >= k:
        return found
    return nearest_products(**query, exact=True)


# --- coverage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    total_images: int
    embedded: int
    failed: int

    @property
    def missing(self) -> int:
        return max(0, self.total_images - self.embedded - self.failed)

    @property
    def complete(self) -> bool:
        """Every image has a vector or a recorded reason why it cannot have one."""
        return self.missing == 0

    @property
    def fraction(self) -> float:
        return (self.embedded + self.failed) / self.total_images if self.total_images else 1.0

    @property
    def failed_fraction(self) -> float:
        """The share of the catalogue's images recorded as unreadable."""
        return self.failed / self.total_images if self.total_images else 0.0

    def activatable(self, *, max_failed_fraction: float) -> bool:
        """Complete, with vectors for all but at most `max_failed_fraction` of the images: a version
        whose images all "failed" is complete too, and must never serve."""
        if not self.complete:
            return False
        if self.total_images and not self.embedded:
            return False
        return self.failed_fraction <= max_failed_fraction


def index_coverage(*, model_version: ModelVersion) -> Coverage:
    """How much of the catalogue the version's vectors cover (the activation check uses it). An
    image counts once: a failure row beside a vector for the same image is not counted."""
    has_vector = ImageEmbedding.objects.filter(model_version=model_version, image_id=OuterRef("image_id"))
    return Coverage(
        total_images=ProductImage.objects.count(),
        embedded=ImageEmbedding.objects.filter(model_version=model_version).count(),
        failed=EmbeddingFailure.objects.filter(model_version=model_version).exclude(Exists(has_vector)).count(),
    )


def hnsw_index_valid(*, model_version: ModelVersion) -> bool | None:
    """True: the version's HNSW index exists and queries can use it; False: a half-built (invalid) one
    is left from an interrupted CREATE INDEX CONCURRENTLY; None: there is none. Raw SQL: the ORM does
    not read pg_index."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            [hnsw_index_name(model_version.pk)],
        )
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def hnsw_index_exists(*, model_version: ModelVersion) -> bool:
    """Whether the version's HNSW index exists and is valid (usable by queries)."""
    return hnsw_index_valid(model_version=model_version) is True
