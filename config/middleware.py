"""Site-wide request guards, in one place rather than per view."""

from __future__ import annotations

import logging
import re

from django.db import DatabaseError, InterfaceError, connections
from django.http import HttpResponse

from .views import _error, database_unavailable

logger = logging.getLogger(__name__)

# C0 control characters and DEL. No query parameter of any page or API means one, and PostgreSQL
# refuses NUL in a string, so a NUL reaching a query was a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# SQLSTATEs of a server that is going away or cannot take the connection: class 08 (connection
# exception) and these. Anything else with a SQLSTATE is an answer from a working server.
_CONNECTION_LOST_STATES = {
    "57P01",  # admin_shutdown: the backend was terminated (a primary failing over, pg_terminate_backend)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: starting up or shutting down
    "53300",  # too_many_connections
}
_DEADLOCK_STATES = {"40P01", "40001"}  # deadlock_detected, serialization_failure: the transaction was rolled back
_QUERY_CANCELED = "57014"  # a statement timeout (or a cancel request)
# Requests that change nothing when they follow the rules: run again after a deadlock, they do the
# same work once. An unsafe one (POST...) may have committed part of its work before the deadlock
# outside a transaction: it is not retried, the error is logged and the visitor gets a 500.
_RETRY_METHODS = {"GET", "HEAD", "OPTIONS"}


def _driver_error(exception: BaseException):
    """The psycopg2 error Django's wrapper raised `exception` from, or None."""
    cause = exception.__cause__
    return cause if cause is not None and type(cause).__module__.startswith("psycopg2") else None


def database_connection_lost(exception: BaseException) -> bool:
    """Whether `exception` means the database connection is gone or cannot be had: a 503.

    psycopg2 gives a lost connection as OperationalError, or as a plain DatabaseError (no SQLSTATE)
    when libpq reports "server closed the connection unexpectedly" before it marks the connection
    bad; an error without a SQLSTATE is libpq's own, never the server's answer. A statement timeout,
    a deadlock or a constraint are the server's answers, with their SQLSTATE: not connection loss.
    """
    if isinstance(exception, InterfaceError):  # "connection already closed"
        return True
    if not isinstance(exception, DatabaseError):
        return False
    driver = _driver_error(exception)
    if driver is None:
        return False
    code = getattr(driver, "pgcode", None)
    if code:
        return code.startswith("08") or code in _CONNECTION_LOST_STATES
    import psycopg2

    # Only the two base classes: psycopg2's subclasses (QueryCanceled, DeadlockDetected, ...) name a
    # server answer even when built without a code.
    return type(driver) in (psycopg2.OperationalError, psycopg2.DatabaseError)


def _sqlstate(exception: BaseException) -> str | None:
    driver = _driver_error(exception)
    if driver is None:
        return None
    code = getattr(driver, "pgcode", None)
    if code:
        return code
    import psycopg2.errors

    if isinstance(driver, (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)):
        return "40P01" if isinstance(driver, psycopg2.errors.DeadlockDetected) else "40001"
    if isinstance(driver, psycopg2.errors.QueryCanceled):
        return _QUERY_CANCELED
    return None


class QueryParameterGuardMiddleware:
    """Answers 400 to a request whose query string has a control character in a name or value."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for name, values in request.GET.lists():
            if _CONTROL.search(name) or any(_CONTROL.search(value) for value in values):
                shown = _CONTROL.sub("?", name)[:40]
                return _error(request, 400, f"The query parameter “{shown}” contains a control character.")
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Database errors of a request, by what they mean:

    - the connection is gone or cannot be had (unreachable, "too many clients already", the primary
      dying mid-request): 503 with Retry-After, never a 500 or a traceback page;
    - a deadlock (or serialization failure) in a GET, HEAD or OPTIONS request: the request is run
      once more (PostgreSQL rolled the victim's transaction back; the other side has gone on);
    - a statement timeout, a deadlock again or in another request: logged as an error with its
      traceback, and a generic 500 page. The server answered: it is not "unavailable".
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(request, "database_retry", False):
            request.database_retry = False
            request.database_retried = True
            response = self.get_response(request)
        return response

    def process_exception(self, request, exception):
        if not isinstance(exception, DatabaseError):
            return None
        if database_connection_lost(exception):
            return database_unavailable(request, exception)
        code = _sqlstate(exception)
        if code in _DEADLOCK_STATES:
            if (
                request.method in _RETRY_METHODS
                and not getattr(request, "database_retried", False)
                and not any(c.in_atomic_block for c in connections.all(initialized_only=True))
            ):
                logger.warning("Deadlock in %s %s: retrying the request once", request.method, request.path)
                request.database_retry = True
                return HttpResponse(status=503)  # replaced by the retry's response in __call__
            logger.error("Deadlock in %s %s (not retried)", request.method, request.path, exc_info=exception)
        elif code == _QUERY_CANCELED:
            logger.error(
                "Statement timeout (query cancelled) in %s %s", request.method, request.path, exc_info=exception
            )
        else:
            return None  # Django logs it and answers with the 500 page (config.views.error_500)
        return _error(request, 500, "Something went wrong on our side. Please try again.")
