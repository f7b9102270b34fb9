"""The per-version HNSW indexes: their names, building (CONCURRENTLY) and dropping, and whether one is
valid. Raw SQL: pgvector's HnswIndex is declared in a migration, but these indexes are created per
model version at run time, as partial expression indexes, and CONCURRENTLY."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from ml.claims import advisory_lock_held
from ml.models import ModelVersion

from ..storage import VectorStorage
from .versions import version_storage

__all__ = [
    "HNSW_BUILD_LOCK",
    "hnsw_scan",
    "hnsw_scan_set",
    "hnsw_build_in_progress",
    "hnsw_index_build",
    "hnsw_index_drop",
    "hnsw_index_exists",
    "hnsw_index_name",
    "hnsw_index_valid",
    "version_dim",
]

logger = logging.getLogger(__name__)

HNSW_BUILD_LOCK = 0x4C4B  # pg_advisory_lock(key, version id) while a version's index is built


def hnsw_index_name(model_version_id: int) -> str:
    return f"search_emb_hnsw_v{int(model_version_id)}"


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


def hnsw_scan_set(*, cursor, ef_search: int, max_scan_tuples: int | None = None) -> None:
    """For the rest of this transaction (SET LOCAL through set_config, which takes parameters; use
    hnsw_scan for a block whose settings end with it): pgvector 0.8's
    iterative scan (relaxed_order), so a filtered HNSW query keeps returning rows; the candidate list
    size `ef_search`; and, when given, how far the iterative scan walks (pgvector's default 20,000)."""
    cursor.execute(
        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', %s, true)",
        [str(int(ef_search))],
    )
    if max_scan_tuples is not None:
        cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", [str(int(max_scan_tuples))])


@contextmanager
def hnsw_scan(*, using: str = DEFAULT_DB_ALIAS, ef_search: int, max_scan_tuples: int | None = None) -> Iterator[None]:
    """A block of reads run with hnsw_scan_set's settings, which end with the block.

    SET LOCAL lasts until the end of the transaction, and a released savepoint keeps it: so the
    block is a transaction of its own, or, inside a caller's, a savepoint that is rolled back at the
    end, which undoes the settings and nothing of the caller's. For reads only (the rollback would
    undo the block's writes)."""
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            hnsw_scan_set(cursor=cursor, ef_search=ef_search, max_scan_tuples=max_scan_tuples)
        yield
        transaction.set_rollback(True, using=using)


def hnsw_build_in_progress(*, model_version_id: int) -> bool:
    """Whether some live session is building the version's HNSW index (holds HNSW_BUILD_LOCK for it)."""
    return advisory_lock_held(key=HNSW_BUILD_LOCK, object_id=model_version_id)


def version_dim(*, model_version: ModelVersion, storage: VectorStorage) -> int | None:
    """The version's vector dimension: recorded on the version, else read from one of its vectors."""
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
    dim = version_dim(model_version=model_version, storage=storage)
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
        # holds about 75k 128-d vectors): raise it on this connection for the build, then put it back.
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
                name,
                notice.strip().removeprefix("NOTICE:").strip(),
                settings.HNSW_BUILD_MEMORY,
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
