"""The JSON API's views on Django REST framework, which describes them (drf-spectacular's OpenAPI schema)
and changes nothing they do.

Each view keeps returning its own JsonResponse. Around it REST framework adds no authentication (the
API reads only: no session, so no CSRF token either), no throttling (photo search has its own rate
limit, config/ratelimit.py), no browsable HTML: every response is JSON whatever the Accept header says,
the body is parsed by Django exactly as before, and a method a view does not take is that view's own
405 message in the API's error shape, {"error": "..."}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.decorators import api_view
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser, DataAndFiles
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler


def json_error(message: str, status: int) -> JsonResponse:
    """The API's error response: {"error": a message for people}, with its status."""
    return JsonResponse({"error": message}, status=status)


class JsonAlways(BaseContentNegotiation):
    """JSON whatever the client accepts (no 406), and the body parsed by the view's one parser."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DjangoBodyParser(BaseParser):
    """The body as Django parses it (request.POST and request.FILES), for any content type: the upload
    handlers a view set (in-memory only, for photo search), Django's limits, and an empty form for a
    body that is not a form, as the views expect."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]._request
        return DataAndFiles(request.POST, request.FILES)


def json_api_view(methods: Sequence[str], *, not_allowed: str) -> Callable:
    """REST framework's api_view for a function view that returns its own JsonResponse; `not_allowed`
    is the 405 message for every other method (OPTIONS included)."""

    def decorator(func: Callable) -> Callable:
        view = api_view([*methods, "HEAD"] if "GET" in methods else list(methods))(func)
        view.cls.renderer_classes = [JSONRenderer]
        view.cls.parser_classes = [DjangoBodyParser]
        view.cls.content_negotiation_class = JsonAlways
        view.cls.authentication_classes = []
        view.cls.permission_classes = [AllowAny]
        view.cls.throttle_classes = []
        # OPTIONS is a 405 like any other method the view does not take (and Allow does not list it).
        view.cls.http_method_names = [name for name in view.cls.http_method_names if name != "options"]
        view.cls.method_not_allowed_message = not_allowed
        return view

    return decorator


def api_exception_handler(exc, context):
    """REST framework's own errors in the API's shape, {"error": message}; any other exception is
    not handled here (None), so Django's handlers answer it as before (config.views)."""
    if isinstance(exc, exceptions.MethodNotAllowed):
        message = getattr(context.get("view"), "method_not_allowed_message", None) or str(exc.detail)
        return Response({"error": message}, status=405)
    response = exception_handler(exc, context)
    if response is not None:
        detail = getattr(exc, "detail", None)
        response.data = {"error": str(detail) if isinstance(detail, str) else "The request could not be understood."}
    return response
