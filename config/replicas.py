"""Read replicas: which database serves a read, and when a replica may.

- `ReplicaRouter` (DATABASE_ROUTERS): every write, every migration and every read outside a
  `replica_reads` view goes to the primary ("default"): the admin, imports, indexing, activation,
  management commands and Celery tasks never read from a replica, so they never act on stale rows.
  Inside a `replica_reads` view, reads of the catalogue's apps (DATABASE_REPLICA_APPS) go to the
  replica chosen for the request; sessions and users still come from the primary.
- `replica_reads` chooses a usable replica for the request, or the primary when none is. A database
  error on the replica (it went away mid-request, a recovery conflict) and a 404 there (a product
  created a moment ago) cost one retry of the view on the primary, never an error page.
- A replica is usable while it is reachable, at most DATABASE_REPLICA_MAX_LAG_SECONDS behind the
  primary, and agrees with the primary on every registered state check (`replica_state_register`):
  search registers the serving model version and whether its HNSW index is valid, so a product page
  never asks a replica for a version it has not replayed yet. The health of every replica is checked
  at most once every DATABASE_REPLICA_CHECK_SECONDS per process (one query on the primary and one per
  replica, plus the state checks), not per query.

Lag: a replica that has replayed the primary's current WAL position (read just before) is 0 s behind;
otherwise its lag is the age of the last transaction it replayed, an upper bound (after an idle
hour, the first write makes a replica "an hour behind" until it replays it, milliseconds later).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.http import Http404

logger = logging.getLogger(__name__)

PRIMARY = DEFAULT_DB_ALIAS

# The alias this request's catalogue reads go to; None outside a replica_reads view (the primary).
_reading: ContextVar[str | None] = ContextVar("lookalike_read_alias", default=None)

StateCheck = Callable[..., Hashable]  # check(using=alias) -> a value the replica must share with the primary
_state_checks: list[StateCheck] = []


def replica_state_register(check: StateCheck) -> None:
    """Add a check a replica must pass before it serves: `check(using=alias)` returns a value, and a
    replica whose value differs from the primary's is not used. Called from an upper app's
    AppConfig.ready() (search registers its serving version), so config imports nothing above it."""
    if check not in _state_checks:
        _state_checks.append(check)


class ReplicaRouter:
    """Reads inside `replica_reads` views to the request's replica; everything else to the primary."""

    def db_for_read(self, model, **hints):
        alias = _reading.get()
        if alias is not None and model._meta.app_label in settings.DATABASE_REPLICA_APPS:
            return alias
        return PRIMARY  # also overrides Django's "the instance's database" for rows read from a replica

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        same_data = {PRIMARY, *settings.DATABASE_REPLICAS}
        if obj1._state.db in same_data and obj2._state.db in same_data:
            return True
        return None

    def allow_migrate(self, db, app_label, **hints):
        return False if db in settings.DATABASE_REPLICAS else None


# --- health -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaHealth:
    alias: str
    usable: bool
    reason: str  # why it is not used ("" when usable), for the log and `devtools.demo --check-services`
    lag_seconds: float | None
    checked_at: float  # time.monotonic()
    catching_up: bool = False  # only behind on what serves (just after an activation): logged as info


_health: dict[str, ReplicaHealth] = {}
_health_lock = threading.Lock()


def replica_health_forget() -> None:
    """Drop every cached health (tests; the next request checks again)."""
    _health.clear()


def replica_health(*, refresh: bool = False) -> dict[str, ReplicaHealth]:
    """Every configured replica's health, checked when older than DATABASE_REPLICA_CHECK_SECONDS.

    One thread checks at a time; the others go on with the last figures meanwhile (or without a
    replica, when there are none yet), so a slow replica never queues every request behind it.
    """
    aliases = list(settings.DATABASE_REPLICAS)
    if not aliases:
        return {}
    now = time.monotonic()
    ttl = settings.DATABASE_REPLICA_CHECK_SECONDS
    stale = refresh or any(alias not in _health or now - _health[alias].checked_at >= ttl for alias in aliases)
    if stale and _health_lock.acquire(blocking=refresh):
        try:
            for health in _replicas_check(aliases):
                _health_record(health)
        finally:
            _health_lock.release()
    return {alias: _health[alias] for alias in aliases if alias in _health}


def _health_record(health: ReplicaHealth) -> None:
    before = _health.get(health.alias)
    _health[health.alias] = health
    if before is None or before.usable != health.usable or (not health.usable and before.reason != health.reason):
        if health.usable:
            logger.info("Read replica %s is in use (%.1f s behind).", health.alias, health.lag_seconds or 0.0)
        elif health.catching_up:
            logger.info("Read replica %s is not used until it catches up: %s.", health.alias, health.reason)
        else:
            logger.warning("Read replica %s is not used: %s. Its reads go to the primary.", health.alias, health.reason)


def replica_mark_unusable(alias: str, reason: str) -> None:
    """Stop using a replica until its next health check (it failed a request)."""
    _health_record(ReplicaHealth(alias, False, reason, None, time.monotonic()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class _Primary:
    wal_lsn: str
    started: object  # pg_postmaster_start_time(): tells the primary itself from a promoted copy
    states: tuple


def _replicas_check(aliases: list[str]) -> list[ReplicaHealth]:
    now = time.monotonic()
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text, pg_postmaster_start_time()")
            lsn, started = cursor.fetchone()
        primary = _Primary(lsn, started, tuple(check(using=PRIMARY) for check in _state_checks))
    except Exception as exc:  # noqa: BLE001 - no replica is used when the primary cannot be compared
        return [
            ReplicaHealth(a, False, f"the primary could not be checked ({_first_line(exc)})", None, now)
            for a in aliases
        ]
    return [_replica_check(alias, primary, now) for alias in aliases]


def _replica_check(alias: str, primary: _Primary, now: float) -> ReplicaHealth:
    max_lag = settings.DATABASE_REPLICA_MAX_LAG_SECONDS
    try:
        with connections[alias].cursor() as cursor:
            # Raw SQL: the ORM has no words for the standby's replay position.
            cursor.execute(
                "SELECT pg_is_in_recovery(), pg_postmaster_start_time(),"
                " pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()),"
                " EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())",
                [primary.wal_lsn],
            )
            in_recovery, started, behind_bytes, since_replay = cursor.fetchone()
        if not in_recovery and started != primary.started:
            return ReplicaHealth(
                alias, False, "it is not a standby of the primary (promoted, or another server)", None, now
            )
        if not in_recovery or (behind_bytes is not None and behind_bytes <= 0):
            lag = 0.0  # the primary itself (a mirror), or it has replayed everything written before this check
        else:
            lag = float(since_replay) if since_replay is not None else math.inf
        if lag > max_lag:
            return ReplicaHealth(alias, False, f"{lag:.1f} s behind the primary (the limit is {max_lag:g} s)", lag, now)
        states = tuple(check(using=alias) for check in _state_checks)
    except Exception as exc:  # noqa: BLE001 - any failure of a replica means: read from the primary
        _connection_drop(alias)
        return ReplicaHealth(alias, False, f"it cannot be read ({_first_line(exc)})", None, now)
    if states != primary.states:
        return ReplicaHealth(
            alias,
            False,
            f"it has not caught up: it serves {states}, the primary {primary.states}",
            lag,
            now,
            catching_up=True,
        )
    return ReplicaHealth(alias, True, "", lag, now)


def _connection_drop(alias: str) -> None:
    try:
        connections[alias].close()
    except DatabaseError:
        pass  # already broken: Django discards it either way


def _connection_usable(alias: str) -> bool:
    connection = connections[alias]
    try:
        return connection.connection is not None and connection.is_usable()
    except Exception:  # noqa: BLE001 - a broken connection may fail even to say so
        return False


def replica_choose() -> str | None:
    """A usable replica's alias for this request (at random among them), or None: use the primary."""
    usable = [health.alias for health in replica_health().values() if health.usable]
    return random.choice(usable) if usable else None


def read_alias() -> str:
    """The alias this request's catalogue reads go to (PRIMARY outside a replica_reads view)."""
    return _reading.get() or PRIMARY


# --- views --------------------------------------------------------------------------------------


def _call_on(alias: str, view, request, args, kwargs):
    token = _reading.set(alias)
    try:
        response = view(request, *args, **kwargs)
        if callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
            response.render()  # a TemplateResponse reads while rendering: here, on the same database
        return response
    finally:
        _reading.reset(token)


def _uploads_rewind(request) -> None:
    for _name, files in request.FILES.lists():
        for upload in files:
            upload.seek(0)


def replica_reads(view):
    """For views that only read: their catalogue reads go to a usable replica, else the primary.

    A database error on the replica, or a 404 there, runs the view once more on the primary (the
    uploads rewound first); the replica is not used again until its next health check.
    """

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        alias = replica_choose()
        if alias is None:
            return _call_on(PRIMARY, view, request, args, kwargs)
        try:
            response = _call_on(alias, view, request, args, kwargs)
            if response.status_code != 404:
                return response
        except Http404:
            pass  # not replayed yet (created a moment ago), or really not there: the primary says which
        except DatabaseError as exc:
            # psycopg2 reports a server that went away as a plain DatabaseError ("server closed the
            # connection unexpectedly"): a query error on a replica that still answers is the view's own.
            if not isinstance(exc, (OperationalError, InterfaceError)) and _connection_usable(alias):
                raise
            logger.warning(
                "Read replica %s failed during %s (%s); retrying on the primary.", alias, request.path, _first_line(exc)
            )
            replica_mark_unusable(alias, f"it failed a request ({_first_line(exc)})")
            _connection_drop(alias)
        _uploads_rewind(request)
        return _call_on(PRIMARY, view, request, args, kwargs)

    return wrapped
