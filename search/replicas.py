"""What a read replica must agree on with the primary before search reads from it (config/replicas.py):
the serving model version, and whether that version's HNSW index is there and valid.

Registered in SearchConfig.ready(). A replica still replaying an activation (it serves the old
version) or the build of the new version's index (a forced activation indexed afterwards) answers
differently from the primary, so product pages and photo search read from the primary until it has
caught up.
"""

from __future__ import annotations

from django.db import connections

from .serving.hnsw import hnsw_index_name

_INDEX_PREFIX = hnsw_index_name(0)[:-1]  # "search_emb_hnsw_v": the name is the prefix and the version id


def serving_state(*, using: str) -> tuple[int | None, bool | None]:
    """(active version id, its HNSW index valid: True, invalid: False, none: None) on one database.
    Raw SQL: one round trip, and the ORM does not read pg_index."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT s.model_version_id, i.indisvalid FROM search_servingstate s"
            " LEFT JOIN pg_class c ON c.relname = %s || s.model_version_id::text"
            " LEFT JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE s.is_active",
            [_INDEX_PREFIX],
        )
        row = cursor.fetchone()
    return (None, None) if row is None else (int(row[0]), row[1])
