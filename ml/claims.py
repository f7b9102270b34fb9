"""Who is training a model version right now: a PostgreSQL session lock per version.

A run claims its version with pg_try_advisory_lock on a connection of its own and holds it until the
run ends. A second claimant (a redelivered task, a second trainer worker, the foreground command
beside a worker) finds the lock taken and backs off. A claimant that dies loses its connection, the
server releases the lock, and the next claimant resumes from the last checkpoint. Raw SQL: the ORM
has no advisory locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

logger = logging.getLogger(__name__)

TRAINING_LOCK = 0x4C4B_0002  # pg_advisory_lock(TRAINING_LOCK, version id) while a version trains


@contextmanager
def model_version_claim(*, model_version_id: int) -> Iterator[bool]:
    """Yields True while this process holds the version's training claim, False when another holds it.

    The lock lives on a separate connection, so nothing Django does with its own connection (closing
    an old one between tasks, a transaction rolling back) can drop it half-way through a run.
    Raises django.db.OperationalError when the database cannot be reached.
    """
    with connection.wrap_database_errors:
        raw = connection.get_new_connection(connection.get_connection_params())
    claimed = False
    try:
        raw.autocommit = True
        with connection.wrap_database_errors, raw.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [TRAINING_LOCK, int(model_version_id)])
            claimed = bool(cursor.fetchone()[0])
        yield claimed
    finally:
        try:
            if claimed:
                # Released here, not only by closing: the server ends a closed connection (and frees its
                # locks) a moment after the client hangs up, so a check right after could still see it.
                with raw.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [TRAINING_LOCK, int(model_version_id)])
        except Exception:  # noqa: BLE001 - a connection that died released the lock with it
            logger.debug("Unlocking the claim of model version %s failed", model_version_id, exc_info=True)
        try:
            raw.close()  # closing the connection releases the lock too
        except Exception:  # noqa: BLE001 - a connection that already died released it too
            logger.debug("Closing the claim connection of model version %s failed", model_version_id, exc_info=True)


def model_version_claimed(*, model_version_id: int) -> bool:
    """Whether some live session holds the version's training claim (a run is in progress)."""
    return advisory_lock_held(key=TRAINING_LOCK, object_id=model_version_id)


def advisory_lock_held(*, key: int, object_id: int) -> bool:
    """Whether some live session of this database holds the two-key advisory lock (key, object_id).

    Raw SQL: the ORM does not read pg_locks. A two-key lock shows its keys as classid and objid with
    objsubid 2."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s AND objsubid = 2)",
            [int(key), int(object_id)],
        )
        return bool(cursor.fetchone()[0])
