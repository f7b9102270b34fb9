"""Site-wide views: media in development and error pages that never leak a traceback."""

import logging
import sys

from django.conf import settings
from django.http import HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.views.static import serve

from .api import json_error

logger = logging.getLogger(__name__)
DATABASE_RETRY_AFTER = 30  # seconds
SERVER_ERROR = "Something went wrong on our side. Please try again."


def media_serve(request, path):
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return response


def _error(request, status: int, message: str):
    if request.path.startswith("/api/"):
        return json_error(message, status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def database_unavailable(request, exception):
    """A database that cannot be reached or has no connection left: 503 with Retry-After."""
    logger.error("Database unavailable for %s: %s", request.path, exception)
    response = _error(request, 503, "The site is busy right now. Please try again in a moment.")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def error_400(request, exception=None):
    return _error(request, 400, "The request could not be understood.")


def error_404(request, exception=None):
    return _error(request, 404, "There is nothing here.")


def error_500(request):
    from .middleware import database_connection_lost

    exception = sys.exc_info()[1]  # called while Django handles it
    if exception is not None and database_connection_lost(exception):  # e.g. raised in a middleware
        return database_unavailable(request, exception)
    try:
        return _error(request, 500, SERVER_ERROR)
    except Exception:  # the site's error page failed too (a template, say): the plain one
        logger.exception("The error page for %s could not be rendered", request.path)
        return HttpResponseServerError(loader.render_to_string("500.html", {"message": SERVER_ERROR}))
