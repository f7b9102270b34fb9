"""Writing a batch of vectors with one binary COPY and one INSERT … SELECT … ON CONFLICT.

Raw SQL because the ORM has neither COPY nor temporary tables. A batch's vectors are encoded in
PostgreSQL's binary COPY format with NumPy (no Python loop per row or per float, no text to parse
on the server), streamed into a temporary table, then upserted from there in one statement that
copies each image's product, category and price from the catalogue rows the caller has locked.

Call inside the batch's transaction: the temporary table empties at commit (ON COMMIT DELETE ROWS),
and a COPY or upsert that fails half-way rolls the whole batch back, leaving no partial rows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..fields import vector_check
from ..storage import HALFVEC, VECTOR, VectorStorage

__all__ = ["copy_binary", "embeddings_upsert"]

LOAD_TABLE = "search_embedding_load"

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")  # no OIDs, no extension
_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_binary(image_ids: Sequence[int], vectors: np.ndarray) -> bytes:
    """COPY … (FORMAT BINARY) data for rows (image_id bigint, embedding vector).

    pgvector's binary form of a vector (vector_recv): int16 dimensions, int16 unused, then float4
    values, all big-endian. Raises ValueError for a NaN or infinite value, or mismatched shapes.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(image_ids):
        raise ValueError(f"Expected one vector per image ([{len(image_ids)}, dim]). Received: shape={vectors.shape}")
    vectors = vectors.astype(np.float32, copy=False)
    if not np.isfinite(vectors).all():
        raise ValueError("A vector must not contain NaN or infinity.")
    n, dim = vectors.shape
    if not 1 <= dim <= 16000:  # pgvector's limit for a vector
        raise ValueError(f"A vector must have 1 to 16,000 dimensions. Received: dim={dim}")
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("values", ">f4", (dim,)),
        ]
    )
    rows = np.empty(n, row)
    rows["fields"] = 2
    rows["id_len"] = 8
    rows["id"] = np.asarray(image_ids, np.int64)
    rows["vec_len"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["unused"] = 0
    rows["values"] = vectors
    return b"".join((_SIGNATURE, rows.tobytes(), _TRAILER))


def embeddings_upsert(
    *, cursor, model_version_id: int, image_ids: Sequence[int], vectors: np.ndarray, storage: VectorStorage = VECTOR
) -> int:
    """Upsert (image, model_version) rows for `image_ids` (sorted, so concurrent writers lock embedding
    rows in one order) with product, category and price read from the catalogue in the same
    statement; returns the rows written. The temporary table always holds float32 `vector`s; the
    INSERT … SELECT casts them to the version's storage and writes its column (search.storage), the
    other column NULL. `cursor` is a Django cursor inside a transaction whose caller has already
    locked the images and their products."""
    if storage not in (VECTOR, HALFVEC):  # its names are spliced into the SQL
        raise ValueError(f"storage must be search.storage.VECTOR or HALFVEC. Received: storage={storage!r}")
    if len(image_ids) == 0:
        return 0
    if storage is HALFVEC:  # float16's range (copy_binary refuses NaN and infinity for both)
        vector_check(np.nan_to_num(np.asarray(vectors, np.float32), nan=0.0, posinf=0.0, neginf=0.0), half=True)
    order = np.argsort(np.asarray(image_ids, np.int64), kind="stable")
    ids = [int(image_ids[i]) for i in order]
    data = copy_binary(ids, np.asarray(vectors)[order])
    # ON COMMIT DELETE ROWS: created once per database connection, emptied by every commit (and by a rollback's
    # undo of the COPY); IF NOT EXISTS also covers a pooler handing out a fresh server connection.
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {LOAD_TABLE} (image_id bigint NOT NULL, embedding vector NOT NULL) "
        "ON COMMIT DELETE ROWS"
    )
    # Django's cursor wrapper passes copy_expert through to psycopg2; its errors become Django's
    # (an OperationalError is retried by the task like any other).
    with cursor.db.wrap_database_errors:
        cursor.copy_expert(
            f"COPY {LOAD_TABLE} (image_id, embedding) FROM STDIN WITH (FORMAT BINARY)",
            io.BytesIO(data),
            max(8192, len(data)),
        )  # size: positional (CursorDebugWrapper)
    # The rows are deleted as they are read, so a second write in this transaction starts empty (a
    # TRUNCATE would give the table a new file every batch); the commit empties the file itself.
    cursor.execute(
        f"""
        WITH loaded AS (DELETE FROM {LOAD_TABLE} RETURNING image_id, embedding)
        INSERT INTO search_imageembedding
            (image_id, model_version_id, product_id, category_id, price, {storage.column}, updated_at)
        SELECT l.image_id, %s, i.product_id, p.category_id, p.price, l.embedding::{storage.name}, now()
        FROM loaded l
        JOIN catalog_productimage i ON i.id = l.image_id
        JOIN catalog_product p ON p.id = i.product_id
        -- The ids again, for the planner: it has no statistics on the temporary table and would
        -- otherwise hash-join it against a sequential scan of every image (100+ ms at 60k).
        WHERE i.id = ANY(%s)
        ORDER BY l.image_id
        ON CONFLICT (image_id, model_version_id) DO UPDATE SET
            product_id = EXCLUDED.product_id, category_id = EXCLUDED.category_id, price = EXCLUDED.price,
            embedding = EXCLUDED.embedding, embedding_half = EXCLUDED.embedding_half,
            updated_at = EXCLUDED.updated_at
        """,
        [model_version_id, ids],
    )
    written = cursor.rowcount
    return written
