"""Writing vectors and serving: reindex jobs, batch embedding, HNSW indexes, starting a training
run that serves when done, and switching the active model."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import Product, ProductImage
from ml.artifacts import ModelLoadError
from ml.models import ModelVersion
from ml.runtime import embedder_for
from ml.services import model_version_create
from ml.workers import worker_devices

from . import tasks
from .models import EmbeddingFailure, ImageEmbedding, IndexBatch, IndexJob, ServingState
from .selectors import Coverage, hnsw_index_name, hnsw_index_valid, index_coverage, model_versions_written, version_storage
from .storage import VECTOR, VectorStorage, storage_named
from .vector_copy import embeddings_upsert

__all__ = [
    "ActivationRefused",
    "Coverage",
    "VectorsInUse",
    "hnsw_index_build",
    "hnsw_index_drop",
    "image_embed",
    "index_batch_fail",
    "index_batch_run",
    "index_coverage",
    "index_job_cancel",
    "index_job_finish",
    "index_job_start",
    "model_version_activate",
    "model_version_storage_set",
    "model_version_train_start",
    "model_version_trained_index",
    "model_version_vectors_delete",
    "product_embeddings_sync",
    "version_storage_ensure",
]

logger = logging.getLogger(__name__)


class ActivationRefused(Exception):
    """The model version cannot become active; str(exc) says why and what to do."""


class VectorsInUse(Exception):
    """The active version's vectors serve every query and cannot be deleted."""


class IndexInfrastructureError(Exception):
    """A batch cannot be embedded here at all (the model does not load, the storage has no local
    files): never a fact about its images. The task retries, then the job fails with the reason."""


# --- embedding images ---------------------------------------------------------------------------


def _images_embed(*, model_version: ModelVersion, images: Sequence[ProductImage]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Run the model once over `images`: ({image_id: vector}, {image_id: reason}). Raises ModelLoadError."""
    return _image_files_embed(model_version=model_version, files=[(image.pk, image.image.name) for image in images])


def _image_files_embed(*, model_version: ModelVersion, files: Sequence[tuple[int, str]]
                       ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """_images_embed for (image id, stored file name) rows: a batch reads just these two columns
    (model instances cost more per row than the database read)."""
    embedder = embedder_for(model_version)
    field = ProductImage._meta.get_field("image")
    failures: dict[int, str] = {}
    readable: list[int] = []
    paths: list[str] = []
    for pk, name in files:
        if not name:  # as FieldFile.path says it
            failures[pk] = f"The image file cannot be opened (The '{field.name}' attribute has no file associated with it.)."
            continue
        try:
            path = field.storage.path(name)
        except NotImplementedError as exc:  # the storage, not the image: every image would "fail"
            raise IndexInfrastructureError(f"The media storage has no local files to embed from ({exc}).") from exc
        except ValueError as exc:  # a name the storage refuses
            failures[pk] = f"The image file cannot be opened ({exc})."
            continue
        readable.append(pk)
        paths.append(path)
    vectors: dict[int, np.ndarray] = {}
    if paths:
        # The task's batch in four model calls of the device's size (a task is 4 x 256 images on a CPU,
        # 4 x 1,024 on a GPU), each decoded while the model runs the previous (ml.inference.embed_files).
        array, file_failures = embedder.embed_files(paths, batch_size=len(paths))
        for index, reason in file_failures.items():
            failures[readable[index]] = str(reason) or "The image could not be read."
        ok = [i for i in range(len(readable)) if i not in file_failures]
        # The contract allows either one row per path or one row per embedded path.
        if len(array) == len(readable):
            rows = ok
        elif len(array) == len(ok):
            rows = list(range(len(ok)))
        else:
            raise RuntimeError(f"The embedder returned {len(array)} vectors for {len(ok)} readable images.")
        for row, i in zip(rows, ok, strict=True):
            vectors[readable[i]] = np.asarray(array[row], dtype=np.float32)
    return vectors, failures


def _embeddings_write(*, model_version: ModelVersion, vectors: dict[int, np.ndarray], failures: dict[int, str]) -> None:
    """Upsert vectors and failure reasons for images that the caller has locked, with their products,
    in this transaction (`_images_lock`): idempotent. The vectors go in with one binary COPY and one
    INSERT … SELECT … ON CONFLICT (search.vector_copy) into the version's storage column (vector or
    halfvec, search.storage), which copies product, category and price from the locked rows; a
    failure rolls the caller's transaction back whole."""
    if vectors:
        storage = version_storage_ensure(model_version=model_version)
        embedded = sorted(vectors)  # a fixed order: concurrent upserts lock rows in the same order
        with connection.cursor() as cursor:
            embeddings_upsert(cursor=cursor, model_version_id=model_version.pk, image_ids=embedded,
                              vectors=np.stack([vectors[i] for i in embedded]), storage=storage)
        EmbeddingFailure.objects.filter(model_version=model_version, image_id__in=embedded).delete()
    if failures:
        EmbeddingFailure.objects.bulk_create(
            [EmbeddingFailure(image_id=i, model_version_id=model_version.pk, reason=failures[i][:2000]) for i in sorted(failures)],
            update_conflicts=True,
            unique_fields=["image", "model_version"],
            update_fields=["reason", "updated_at"],
        )
        # A vector from before the file went bad no longer describes the image.
        ImageEmbedding.objects.filter(model_version=model_version, image_id__in=list(failures)).delete()


def _images_lock(*, image_ids: Sequence[int]) -> set[int]:
    """Lock the images and their products (FOR NO KEY UPDATE, in image id order: the order every
    writer takes them) for this transaction; returns the ids of the images that still exist.

    Raw SQL: the ORM locks `of` related rows only while building model instances for them, which
    costs more than the rest of a batch's write."""
    if not image_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.id FROM catalog_productimage i JOIN catalog_product p ON p.id = i.product_id "
            "WHERE i.id = ANY(%s) ORDER BY i.id FOR NO KEY UPDATE OF i, p",
            [list(image_ids)],
        )
        return {row[0] for row in cursor.fetchall()}


def image_embed(*, image_id: int) -> list[int]:
    """Embed one product image for the active version and any version being reindexed.

    Called (through a task) after an image is saved. Returns the ids of the versions written; an image
    deleted meanwhile, or no version to write for, writes nothing.
    """
    image = ProductImage.objects.select_related("product").filter(pk=image_id).first()
    if image is None:
        return []
    written = []
    for version in model_versions_written():
        try:
            vectors, failures = _images_embed(model_version=version, images=[image])
        except (ModelLoadError, IndexInfrastructureError) as exc:
            logger.warning("Image %s not embedded for version %s: %s", image_id, version.pk, exc)
            continue
        with transaction.atomic():
            # As a batch does: the image and product read again, locked, so the price and category
            # copied are today's, and a batch writing the same image waits (one vector or one failure).
            if not _images_lock(image_ids=[image_id]):
                return written
            _embeddings_write(model_version=version, vectors=vectors, failures=failures)
        written.append(version.pk)
    return written


def product_embeddings_sync(*, product: Product) -> int:
    """Copy the product's category and price onto its embedding rows; returns rows changed."""
    return (
        ImageEmbedding.objects.filter(product_id=product.pk)
        .exclude(category_id=product.category_id, price=product.price)
        .update(category_id=product.category_id, price=product.price)
        if product.price is not None
        else ImageEmbedding.objects.filter(product_id=product.pk)
        .exclude(category_id=product.category_id, price__isnull=True)
        .update(category_id=product.category_id, price=None)
    )


# --- reindex jobs -------------------------------------------------------------------------------


def index_missing_for_serving_versions() -> list[IndexJob]:
    """Embed images that bypassed the post_save signal (bulk imports) for the versions that serve or
    are being indexed: the active one and any with an unfinished job. Returns the jobs started."""
    return [index_job_start(model_version=version, only_missing=True) for version in model_versions_written()]


def embedding_batch_size() -> int:
    """Images per indexing task: settings.EMBEDDING_BATCH_SIZE, or EMBEDDING_BATCH_SIZE_GPU when every
    running worker on the embeddings queue reported a GPU (ml.workers): larger batches keep a GPU
    busy and cost fewer database round trips per image."""
    workers = [w for w in worker_devices() if w.alive and "embeddings" in w.queues]
    if workers and all(w.device is not None and w.device.is_gpu for w in workers):
        return settings.EMBEDDING_BATCH_SIZE_GPU
    return settings.EMBEDDING_BATCH_SIZE


def index_job_start(*, model_version: ModelVersion, only_missing: bool = False) -> IndexJob:
    """Start reindexing the catalogue for `model_version`; returns the job.

    The images (all, or with `only_missing` those without a vector or failure for this version) are
    split into batches of settings.EMBEDDING_BATCH_SIZE; one Celery task per batch is enqueued after
    this transaction commits. Unfinished earlier jobs for the version are cancelled (their pending
    batches then do nothing). When the last batch finishes, the job builds the version's HNSW index.
    The active version keeps serving queries throughout. Raises ValueError when the
    version did not succeed.
    """
    if model_version.status != ModelVersion.Status.SUCCEEDED:
        raise ValueError(
            f"Only a succeeded model version can be indexed. Received: version #{model_version.pk} "
            f"with status {model_version.status!r}."
        )
    size = embedding_batch_size()
    with transaction.atomic():
        version_storage_ensure(model_version=model_version)  # fixed before any batch writes
        IndexJob.objects.filter(model_version=model_version, status__in=IndexJob.UNFINISHED).update(
            status=IndexJob.Status.CANCELLED, finished_at=timezone.now()
        )
        images = ProductImage.objects.order_by("id")
        if only_missing:
            images = images.exclude(embeddings__model_version=model_version).exclude(
                embedding_failures__model_version=model_version
            )
        ids = list(images.values_list("id", flat=True))
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        job = IndexJob.objects.create(
            model_version=model_version,
            status=IndexJob.Status.RUNNING,
            total=len(ids),
            batches_total=len(batches),
        )
        created = IndexBatch.objects.bulk_create(
            IndexBatch(job=job, number=n, image_ids=chunk) for n, chunk in enumerate(batches)
        )
        batch_ids = [b.pk for b in created]
        if batch_ids:
            transaction.on_commit(lambda: [tasks.index_batch_task.delay(pk) for pk in batch_ids])
        else:
            transaction.on_commit(lambda: tasks.index_job_finish_task.delay(job.pk))
    return job


def index_job_cancel(*, job: IndexJob) -> IndexJob:
    """Cancel an unfinished reindex job: its pending batches then do nothing. Vectors already
    written stay (index_job_start(only_missing=True) continues from them)."""
    IndexJob.objects.filter(pk=job.pk, status__in=IndexJob.UNFINISHED).update(
        status=IndexJob.Status.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _job_fail(*, job_id: int, error: str) -> None:
    IndexJob.objects.filter(pk=job_id, status__in=IndexJob.UNFINISHED).update(
        status=IndexJob.Status.FAILED, error=error[:4000], finished_at=timezone.now()
    )


def index_batch_run(*, batch_id: int) -> bool:
    """Embed one batch of a reindex job and upsert its vectors; returns whether it did the work.

    Safe to run twice (the upsert writes the same rows; the job's counts move only the first time
    the batch finishes) and concurrently with other batches. Images that cannot be read are recorded
    as failures with their reason; the rest are embedded. A model that fails to load, or storage
    without local files, raises IndexInfrastructureError: the task retries, then fails the job.
    """
    batch = IndexBatch.objects.select_related("job__model_version").filter(pk=batch_id).first()
    if batch is None or batch.job.status != IndexJob.Status.RUNNING:
        return False
    if batch.finished_at is not None:
        # Redelivered after it finished: if the job's finish message was lost (the broker was down
        # just then), this delivery sends it again; index_job_finish is idempotent.
        if batch.job.batches_done >= batch.job.batches_total:
            transaction.on_commit(lambda: tasks.index_job_finish_task.delay(batch.job_id))
        return False
    version = batch.job.model_version
    started = time.perf_counter()
    # Counted (and committed) before the work: a batch whose worker dies every time, e.g. an image
    # that crashes the decoder, is given up after INDEX_BATCH_MAX_ATTEMPTS instead of looping.
    # Raw SQL: the ORM's update() returns no values, and the count is needed (one round trip, not two).
    with connection.cursor() as cursor:
        cursor.execute("UPDATE search_indexbatch SET attempts = attempts + 1 WHERE id = %s RETURNING attempts", [batch.pk])
        batch.attempts = cursor.fetchone()[0]
    if batch.attempts > settings.INDEX_BATCH_MAX_ATTEMPTS:
        logger.error("Batch %s given up after %s attempts", batch.pk, batch.attempts - 1)
        reason = (
            f"Not embedded: its batch was started {batch.attempts - 1} times and never finished "
            "(the worker was lost each time); reindex with only missing images to try again."
        )
        return _batch_write(batch=batch, vectors={}, failures=dict.fromkeys(batch.image_ids, reason))
    # Only what the model needs: the product's category and price are read under the write's lock.
    files = list(ProductImage.objects.filter(pk__in=batch.image_ids).order_by("id").values_list("id", "image"))
    read = time.perf_counter()
    try:
        vectors, failures = _image_files_embed(model_version=version, files=files)
    except ModelLoadError as exc:
        raise IndexInfrastructureError(f"The model could not be loaded: {exc}") from exc
    embedded = time.perf_counter()
    written = _batch_write(batch=batch, vectors=vectors, failures=failures)
    done = time.perf_counter()
    # One line per batch (bench/indexing.py reads them for its per-stage profile of the real run).
    logger.info(
        "Index batch %s of job %s: %d embedded, %d failed; ms rows=%.1f embed=%.1f write=%.1f total=%.1f",
        batch.number, batch.job_id, len(vectors), len(failures), 1000 * (read - started),
        1000 * (embedded - read), 1000 * (done - embedded), 1000 * (done - started),
    )
    return written


def index_batch_fail(*, batch_id: int, reason: str) -> bool:
    """Fail the job of a batch whose task failed for good (retries used up, or an error in the model
    call or the database). Nothing is recorded against its images: the fault was not theirs, and a
    job of "failed" images must never finish complete and activate a version without vectors."""
    batch = IndexBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.finished_at is not None:
        return False
    _job_fail(job_id=batch.job_id, error=f"Batch {batch.number} could not be embedded: {reason}")
    return True


def _batch_write(*, batch: IndexBatch, vectors: dict[int, np.ndarray], failures: dict[int, str]) -> bool:
    """Write a batch's results and count it once; the last batch sends the job's finish message."""
    job, version = batch.job, batch.job.model_version
    with transaction.atomic():
        with connection.cursor() as cursor:
            # No wait for the WAL flush at commit: a batch lost in a crash just after it is lost with
            # its finished_at, so it is redone (redelivery, or the repair task's requeue).
            cursor.execute("SET LOCAL synchronous_commit = off")
        # The job row lock orders this write against a cancel or "delete vectors" that began during
        # the model call: if the job stopped running, nothing is written.
        if not IndexJob.objects.select_for_update().filter(pk=job.pk, status=IndexJob.Status.RUNNING).exists():
            return False
        # Images (and products) are locked: one deleted during the model call is dropped, and a price
        # or category saved meanwhile is copied as it is now.
        live = _images_lock(image_ids=batch.image_ids)
        vectors = {k: v for k, v in vectors.items() if k in live}
        failures = {k: v for k, v in failures.items() if k in live}
        _embeddings_write(model_version=version, vectors=vectors, failures=failures)
        first_finish = IndexBatch.objects.filter(pk=batch.pk, finished_at__isnull=True).update(
            finished_at=timezone.now(), embedded=len(vectors), failed=len(failures)
        )
        if first_finish:
            IndexJob.objects.filter(pk=job.pk).update(
                done=F("done") + len(vectors),
                failed=F("failed") + len(failures),
                total=F("total") - (len(batch.image_ids) - len(live)),
                batches_done=F("batches_done") + 1,
            )
            # The row lock held since the start orders concurrent batches: exactly one sees the last.
            job.refresh_from_db(fields=["batches_done", "batches_total", "status"])
            if job.batches_done >= job.batches_total and job.status == IndexJob.Status.RUNNING:
                job_id = job.pk
                transaction.on_commit(lambda: tasks.index_job_finish_task.delay(job_id))
    return True


def index_job_finish(*, job_id: int) -> IndexJob | None:
    """Build the version's HNSW index (concurrently) once every batch is done, then mark the job done;
    a version with auto_activate is then activated if its vectors cover the catalogue.

    Idempotent: a finished or cancelled job is left alone; a build interrupted half-way is redone.
    """
    with transaction.atomic():
        job = IndexJob.objects.select_for_update().select_related("model_version").filter(pk=job_id).first()
        if job is None or job.status not in (IndexJob.Status.RUNNING, IndexJob.Status.BUILDING_INDEX):
            return job
        if job.batches_done < job.batches_total:
            return job
        job.status = IndexJob.Status.BUILDING_INDEX
        job.save(update_fields=["status"])
    try:
        with connection.cursor() as cursor:
            # A duplicate finish message (redelivery) must not see the first build's not-yet-valid
            # index as broken and drop it: one build per version at a time; the other returns.
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [HNSW_BUILD_LOCK, job.model_version_id])
            if not cursor.fetchone()[0]:
                return job
        try:
            hnsw_index_build(model_version=job.model_version)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [HNSW_BUILD_LOCK, job.model_version_id])
    except (OperationalError, InterfaceError):
        raise  # the connection dropped: the task retries, and the build (half-built index too) is redone
    except Exception as exc:
        _job_fail(job_id=job.pk, error=f"Building the HNSW index failed: {exc}")
        raise
    with transaction.atomic():
        # The job row lock orders this against a cancel during the build: a cancelled job activates nothing.
        if not IndexJob.objects.select_for_update().filter(pk=job.pk, status=IndexJob.Status.BUILDING_INDEX).exists():
            job.refresh_from_db()
            return job
        version = job.model_version
        serving = ServingState.objects.filter(model_version=version).first()
        if serving is not None and serving.auto_activate and not serving.is_active:
            # Before the job reads "done", so whoever waits for "done" sees the switch too.
            try:
                model_version_activate(model_version=version)  # a savepoint: a refusal undoes only itself
            except ActivationRefused as exc:
                logger.warning("Model version %s not auto-activated: %s", version.pk, exc)
        IndexJob.objects.filter(pk=job.pk).update(status=IndexJob.Status.DONE, finished_at=timezone.now())
    job.refresh_from_db()
    return job


# --- HNSW indexes -------------------------------------------------------------------------------
# Raw SQL: pgvector's HnswIndex is declared in a migration, but these indexes are created per model
# version at run time, as partial expression indexes, and CONCURRENTLY.


def _version_dim(model_version: ModelVersion, storage: VectorStorage) -> int | None:
    if model_version.dim:
        return int(model_version.dim)
    with connection.cursor() as cursor:
        cursor.execute(  # the column is a name from search.storage, not input
            f"SELECT vector_dims({storage.column}) FROM search_imageembedding WHERE model_version_id = %s LIMIT 1",
            [model_version.pk],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def hnsw_index_build(*, model_version: ModelVersion) -> str | None:
    """Create the version's partial HNSW index on (embedding::vector(D)) vector_l2_ops, or for a
    halfvec version on (embedding_half::halfvec(D)) halfvec_l2_ops (search.storage); returns its name.

    CONCURRENTLY when called outside a transaction (workers), so the table keeps taking reads and
    writes; inside one (tests, shell in atomic) it falls back to a plain CREATE INDEX. A half-built
    (invalid) index left by an interrupted build is dropped and rebuilt. Returns None when the version
    has no vectors and no known dimension.
    """
    storage = version_storage(model_version=model_version.pk)
    dim = _version_dim(model_version, storage)
    if dim is None:
        return None
    name = hnsw_index_name(model_version.pk)
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
    with connection.cursor() as cursor:
        if not concurrently:
            # Django's deferred FK checks would otherwise block CREATE INDEX ("pending trigger events").
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        if hnsw_index_valid(model_version=model_version) is False:
            cursor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')
        # HNSW builds fast only while the graph fits in maintenance_work_mem (Postgres' default, 64 MB,
        # holds about 75k 128-d vectors): raise it for this session's build, then put it back.
        cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [settings.HNSW_BUILD_MEMORY])
        notices = getattr(connection.connection, "notices", None)  # psycopg2 keeps the last 50
        if notices is not None:
            notices.clear()
        try:
            # dim and pk are integers from the database; DDL takes no parameters.
            cursor.execute(
                f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" ON search_imageembedding '
                f"USING hnsw (({storage.sql(dim)}) {storage.opclass}) WHERE model_version_id = {int(model_version.pk)}"
            )
        finally:
            cursor.execute("RESET maintenance_work_mem")
    _hnsw_memory_warn(name=name, notices=list(notices or []))
    return name


def _hnsw_memory_warn(*, name: str, notices: list[str]) -> None:
    """pgvector says (a NOTICE) when the graph outgrew maintenance_work_mem and the rest of the
    build went to disk, many times slower: at 1M vectors that is most of the build. Say what to set."""
    for notice in notices:
        if "no longer fits into maintenance_work_mem" in notice:
            logger.warning(
                "HNSW index %s: %s Raise HNSW_BUILD_MEMORY (now %s) to at least the index size for the next build "
                "(measured: 1.1 GB per million 128-d halfvec vectors, 1.3 GB as vector; docs/scaling.md).",
                name, notice.strip().removeprefix("NOTICE:").strip(), settings.HNSW_BUILD_MEMORY,
            )


def hnsw_index_drop(*, model_version: ModelVersion) -> None:
    """Drop the version's HNSW index if it exists, CONCURRENTLY. Called inside a transaction (the
    admin's delete runs in one), the drop waits for the commit: a plain DROP INDEX would lock the
    embeddings table, and with it every search, until then."""
    name = hnsw_index_name(model_version.pk)

    def drop() -> None:
        # Still in a transaction only where on_commit callbacks run early (TestCase): plain DROP there.
        concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')

    if connection.in_atomic_block:
        transaction.on_commit(drop)
    else:
        drop()


# --- serving: training that activates when done, and switching models ----------------------------


def model_version_train_start(
    *,
    architecture: str | None = None,
    variant: str | None = None,
    overrides: dict | None = None,
    auto_activate: bool = False,
    enqueue: bool = True,
    storage: str | None = None,
) -> ModelVersion:
    """Queue a training run (ml.services.model_version_create; with `enqueue` False nothing is queued:
    the caller trains it itself); with `auto_activate`, the catalogue is indexed once it is trained
    and the version serves when its vectors cover it. Its vectors are stored as `storage` (vector or
    halfvec; settings.VECTOR_STORAGE by default). Raises ValueError for bad hyperparameters or
    storage, before anything is recorded."""
    chosen = storage_named(storage or settings.VECTOR_STORAGE)
    with transaction.atomic():  # the training task is enqueued after this commits, with the state
        version = model_version_create(architecture=architecture, variant=variant, overrides=overrides, enqueue=enqueue)
        ServingState.objects.create(model_version=version, auto_activate=auto_activate, storage=chosen.name)
    return version


def model_version_trained_index(*, model_version: ModelVersion) -> IndexJob | None:
    """After training succeeded: index the catalogue with a version that is to auto-activate
    (index_job_finish then activates it). Returns the job, or None when it was not asked for."""
    if not ServingState.objects.filter(model_version=model_version, auto_activate=True).exists():
        return None
    return index_job_start(model_version=model_version)



ACTIVATION_LOCK = 0x4C4B_0001  # pg_advisory_xact_lock key for model_version_activate
HNSW_BUILD_LOCK = 0x4C4B  # pg_advisory_lock(key, version id) while a version's index is built


def model_version_activate(*, model_version: ModelVersion, force: bool = False) -> ModelVersion:
    """Make `model_version` the one every query uses, in one transaction.

    Allowed only for a succeeded version whose vectors cover the catalogue: every image embedded or
    recorded as unreadable, and at most settings.ACTIVATION_MAX_FAILED_FRACTION of them unreadable
    (so a version without vectors never serves), unless `force` (which skips only the coverage check). Other versions are
    deactivated in the same transaction, so requests see either the old or the new version, never
    both. Raises ActivationRefused with the reason.
    """
    with transaction.atomic():
        # One activation at a time: two racing ones each lock only their own row and find nothing
        # active, and the second then hits the one-active constraint (IntegrityError). Raw SQL: the
        # ORM has no advisory locks; the lock ends with the transaction.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ACTIVATION_LOCK])
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if version.status != ModelVersion.Status.SUCCEEDED:
            raise ActivationRefused(
                f"Model version #{version.pk} has status “{version.get_status_display()}”; only a succeeded "
                "version can be activated."
            )
        if not force:
            coverage = index_coverage(model_version=version)
            bound = settings.ACTIVATION_MAX_FAILED_FRACTION
            if not coverage.activatable(max_failed_fraction=bound):
                raise ActivationRefused(
                    f"Model version #{version.pk} has vectors for {coverage.embedded:,} of {coverage.total_images:,} "
                    f"images ({coverage.failed:,} unreadable, {coverage.failed_fraction:.1%}; at most {bound:.1%} "
                    f"may be; {coverage.missing:,} missing). Reindex it first, or force the activation."
                )
        list(ServingState.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk))
        ServingState.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ServingState.objects.update_or_create(model_version=version, defaults={"is_active": True})
    return model_version


def model_version_vectors_delete(*, model_version: ModelVersion) -> int:
    """Delete a version's vectors, failure records and HNSW index; returns the vectors deleted.

    Refuses (VectorsInUse) for the active version. Unfinished reindex jobs for it are cancelled.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if ServingState.objects.select_for_update().filter(model_version=version, is_active=True).exists():
            raise VectorsInUse(
                f"Model version #{version.pk} is active: activate another version before deleting its vectors."
            )
        IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED).update(
            status=IndexJob.Status.CANCELLED, finished_at=timezone.now()
        )
        deleted, _ = ImageEmbedding.objects.filter(model_version=version).delete()
        EmbeddingFailure.objects.filter(model_version=version).delete()
    hnsw_index_drop(model_version=version)
    return deleted


# --- vector storage (search.storage) -------------------------------------------------------------


def version_storage_ensure(*, model_version: ModelVersion) -> VectorStorage:
    """The version's vector storage, recorded on its serving state (created if missing) so it stays
    fixed once vectors are written. A version without a serving state gets settings.VECTOR_STORAGE,
    unless it already has float32 vectors (written before halfvec existed): those stay vector.
    The writers call this before writing a version's vectors and write to `storage.column`."""
    state = ServingState.objects.filter(model_version=model_version).only("storage").first()
    if state is not None:
        return state.vector_storage
    legacy = ImageEmbedding.objects.filter(model_version=model_version, embedding__isnull=False).exists()
    chosen = VECTOR if legacy else storage_named(settings.VECTOR_STORAGE)
    state, _ = ServingState.objects.get_or_create(model_version=model_version, defaults={"storage": chosen.name})
    return state.vector_storage


def model_version_storage_set(*, model_version: ModelVersion, storage: str) -> VectorStorage:
    """Store the version's vectors as `storage` ("vector" or "halfvec") from now on. Allowed only
    while it has no vectors and no unfinished reindex job (delete its vectors first): its vectors
    and its HNSW index are all of one type. Raises ValueError with the reason."""
    chosen = storage_named(storage)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        state, _ = ServingState.objects.select_for_update().get_or_create(model_version=version)
        if state.storage == chosen.name:
            return chosen
        if ImageEmbedding.objects.filter(model_version=version).exists():
            raise ValueError(
                f"Model version #{version.pk} already stores its vectors as {state.storage}: delete its vectors "
                f"before storing them as {chosen.name}."
            )
        if IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED).exists():
            raise ValueError(f"Model version #{version.pk} is being indexed: cancel the job before changing its storage.")
        state.storage = chosen.name
        state.save(update_fields=["storage"])
    return chosen
