"""Site-wide views: media in development and error pages that never leak a traceback."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.views.static import serve


def media_serve(request, path):
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return response


def _error(request, status: int, message: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message}, status=status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def error_400(request, exception=None):
    return _error(request, 400, "The request could not be understood.")


def error_404(request, exception=None):
    return _error(request, 404, "There is nothing here.")


def error_500(request):
    import sys

    from django.db import InterfaceError, OperationalError

    from .middleware import database_unavailable

    exception = sys.exc_info()[1]  # called while Django handles it
    if isinstance(exception, (OperationalError, InterfaceError)):  # e.g. raised in a middleware
        return database_unavailable(request, exception)
    return _error(request, 500, "Something went wrong on our side. Please try again.")
