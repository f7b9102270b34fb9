"""Site-wide request guards, in one place rather than per view."""

from __future__ import annotations

import re

from django.db import InterfaceError, OperationalError

from .views import _error, database_unavailable

# C0 control characters and DEL. No query parameter of any page or API means one, and PostgreSQL
# refuses NUL in a string, so a NUL reaching a query was a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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

