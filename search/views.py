"""Photo search page and the JSON API: validate, call one selector, render."""

from __future__ import annotations

import base64
import io
from functools import wraps

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods
from PIL import Image

from catalog.images import ImageInfo
from catalog.models import Product
from config.api import json_api_view, json_error
from config.ratelimit import rate_limit_check
from config.replicas import replica_reads

from .api_schema import photo_search_schema, similar_schema
from .forms import PhotoSearchForm, k_parse
from .queries.boxes import AUTO, BoxedPhoto, box_choices, boxes_json, drawn_style, photo_boxes
from .queries.photo import PhotoRefused, SearchUnavailable, photo_search
from .queries.similar import SimilarItems, SimilarProduct, product_similar
from .serving.versions import active_model_version

THUMBNAIL_PX = 256


def _thumbnail_data_uri(info: ImageInfo) -> str:
    """The query photo as a data: URI: it is shown back but never stored."""
    img = info.image.copy()
    img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small = max(img.size) <= 64
    img.save(buffer, format="PNG" if small else "JPEG", quality=85)
    return f"data:image/{'png' if small else 'jpeg'};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


# The page carries the whole photo, so that picking another box or redrawing one searches it again
# without a new upload (nothing is stored): losslessly up to CARRY_PNG_PIXELS, beyond that as a JPEG
# at most CARRY_SIDE pixels on its longest side (the page's script scales the boxes to it).
CARRY_PNG_PIXELS = 640 * 480
CARRY_SIDE = 2048


def _photo_data_uri(info: ImageInfo) -> str:
    img, fmt = info.image, "PNG"
    if img.width * img.height > CARRY_PNG_PIXELS:
        img, fmt = img.copy(), "JPEG"
        img.thumbnail((CARRY_SIDE, CARRY_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {"compress_level": 1}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def proposals_context(photo: ImageInfo, boxed: BoxedPhoto) -> dict:
    """What the search page shows of the boxes: the photo with every proposed box as a choice, and
    the crop value that searches the same region again."""
    size = {"width": photo.width, "height": photo.height}
    return {
        "boxed": boxed,
        "photo": {"uri": _photo_data_uri(photo), **size},
        "box_choices": box_choices(boxed, **size),
        "drawn_style": drawn_style(boxed, **size),
        "crop_again": "" if boxed.crop == AUTO else str(boxed.crop),
    }


# Room in a request body for the form fields and multipart headers around the photo.
UPLOAD_BODY_SLACK = 64 * 1024


def upload_guard(*, api: bool):
    """Before a photo-search POST body is read: the per-client rate limit (429 with Retry-After),
    then the body's size (400), then in-memory parsing only, so an upload never touches the disk.

    Goes outside CSRF protection (csrf_exempt here, csrf_protect on the page view inside), because
    checking the token reads the body, as Django's docs advise for changing upload handlers.
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method != "POST":
                return view(request, *args, **kwargs)
            retry_after = rate_limit_check(request=request, scope="photo_search", rate=settings.SEARCH_RATE_LIMIT)
            if retry_after is not None:
                message = f"Too many photo searches; try again in {retry_after} seconds."
                response = json_error(message, 429) if api else _page_error(request, 429, message)
                response["Retry-After"] = str(retry_after)
                return response
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            max_bytes = settings.SEARCH_UPLOAD_MAX_BYTES
            if length > max_bytes + UPLOAD_BODY_SLACK:
                message = f"The upload is {length / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
                return json_error(message, 400) if api else _page_error(request, 400, message)
            request.upload_handlers = [MemoryFileUploadHandler(request)]
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _page_error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


@upload_guard(api=False)
@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
@replica_reads  # inside the rate limit and CSRF check: a retry on the primary is not counted twice
def photo_search_view(request: HttpRequest) -> HttpResponse:
    template = "search/photo_search.html"
    if request.method != "POST":
        form = PhotoSearchForm(
            initial={name: request.GET.get(name) or None for name in ("category", "q", "min_price", "max_price")}
        )
        return render(request, template, {"form": form, "available": active_model_version() is not None})
    form = PhotoSearchForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, template, {"form": form, "available": True}, status=400)
    photo, version = form.cleaned_data["image"], active_model_version()
    boxed = photo_boxes(photo, form.cleaned_data["crop"], version=version)
    info = boxed.image
    context = {
        "form": form,
        "available": True,
        "thumbnail": _thumbnail_data_uri(info),
        "query_is_small": max(info.width, info.height) <= 64,
    }
    context.update(proposals_context(photo, boxed))
    try:
        context["result"] = photo_search(image=info, model_version=version, **_search_args(form))
    except PhotoRefused as exc:
        form.add_error("image", str(exc))
        return render(request, template, {"form": form, "available": True}, status=400)
    except SearchUnavailable as exc:
        context.update(available=False, unavailable=str(exc))
        return _retry_later(render(request, template, context, status=503), exc)
    context.update(category=form.cleaned_data["category"], q=form.cleaned_data["q"], search_q=form.cleaned_data["q"])
    return render(request, template, context)


def _retry_later(response: HttpResponse, exc: SearchUnavailable) -> HttpResponse:
    response["Retry-After"] = str(exc.retry_after)
    return response


def _search_args(form: PhotoSearchForm) -> dict:
    data = form.cleaned_data
    return {k: data[k] for k in ("k", "category", "min_price", "max_price")} | {"query": data["q"]}


# --- JSON API -----------------------------------------------------------------------------------


def _item_json(request: HttpRequest, item: SimilarProduct) -> dict:
    return {
        "id": item.product.pk,
        "title": item.product.title,
        "url": request.build_absolute_uri(item.product.get_absolute_url()),
        "image_url": request.build_absolute_uri(item.image_url) if item.image_url else None,
        "distance": item.distance,
    }


@similar_schema
@json_api_view(["GET"], not_allowed="Use GET.")
@replica_reads
def api_product_similar(request: HttpRequest, pk: int) -> JsonResponse:
    """GET /api/products/<id>/similar?k=8&same_category=1"""
    if request.method not in ("GET", "HEAD"):
        return json_error("Use GET.", 405)
    try:
        k = k_parse(request.GET.get("k"))
    except ValueError as exc:
        return json_error(str(exc), 400)
    product = Product.objects.browsable().filter(pk=pk).first()
    if product is None:
        return json_error(f"There is no product with id {pk}.", 404)
    similar = product_similar(product=product, k=k, same_category=request.GET.get("same_category") in ("1", "true"))
    if similar.state == SimilarItems.NO_MODEL:
        return json_error("Similar items are not available yet: no model is active.", 503)
    body = {
        "product": product.pk,
        "model_version": similar.model_version.pk,
        "state": similar.state,
        "results": [_item_json(request, item) for item in similar.items],
    }
    if similar.progress is not None:
        body["progress"] = {"done": similar.progress.done, "total": similar.progress.total}
    return JsonResponse(body)


# Scripts POST here with no session or CSRF cookie, and the endpoint changes nothing (it reads,
# and keeps no upload), so there is no cookie-authenticated action for CSRF to protect.
@upload_guard(api=True)
@photo_search_schema
@json_api_view(["POST"], not_allowed="Use POST with a multipart form: image, and optionally k and category.")
@replica_reads
def api_search(request: HttpRequest) -> JsonResponse:
    """POST /api/search (multipart: image; optional crop (auto, none or x,y,w,h), k, category slug, q,
    min_price, max_price)"""
    if request.method != "POST":
        return json_error("Use POST with a multipart form: image, and optionally k and category.", 405)
    form = PhotoSearchForm(request.POST, request.FILES)
    if not form.is_valid():
        return json_error(form.first_error(), 400)
    version = active_model_version()
    boxed = photo_boxes(form.cleaned_data["image"], form.cleaned_data["crop"], version=version)
    try:
        result = photo_search(image=boxed.image, model_version=version, **_search_args(form))
    except PhotoRefused as exc:
        return json_error(str(exc), 400)
    except SearchUnavailable as exc:
        return _retry_later(json_error(str(exc), 503), exc)
    return JsonResponse(
        {
            "model_version": result.model_version.pk,
            "query": form.cleaned_data["q"],
            "match": result.match,
            "category_guess": (
                {"label": result.guess.label, "probability": result.guess.probability} if result.guess else None
            ),
            "results": [_item_json(request, item) for item in result.items],
            **boxes_json(boxed),
        }
    )
