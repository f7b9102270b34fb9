"""Site-wide request guards, in one place rather than per view."""

from __future__ import annotations

import logging
import re

from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# C0 control characters and DEL. No query parameter of any page or API means one, and PostgreSQL
# refuses NUL in a string, so a NUL reaching a query was a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DATABASE_RETRY_AFTER = 30  # seconds


class QueryParameterGuardMiddleware:
    """Answers 400 to a request whose query string has a control character in a name or value."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for name, values in request.GET.lists():
            if _CONTROL.search(name) or any(_CONTROL.search(value) for value in values):
                from .views import _error

                shown = _CONTROL.sub("?", name)[:40]
                return _error(request, 400, f"The query parameter “{shown}” contains a control character.")
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A database that cannot be reached or has no connection left ("too many clients already")
    answers 503 with Retry-After, never a 500 (or, with DEBUG on, a traceback page)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        return database_unavailable(request, exception)


def database_unavailable(request, exception):
    from .views import _error

    logger.error("Database unavailable for %s: %s", request.path, exception)
    response = _error(request, 503, "The site is busy right now. Please try again in a moment.")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response
