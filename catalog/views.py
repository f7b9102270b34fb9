from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from config.api import json_api_view, json_error
from config.replicas import replica_reads

from .api_schema import product_list_schema
from .forms import ProductSearchForm
from .keyword_search import Match, product_search
from .models import Product

PAGE_SIZE = 48
SIMILAR_ON_PAGE = 12  # fills rows of 6, 4, 3 and 2 columns alike
MORE_LIKE_THIS = 48
API_PAGE_SIZE = 24
API_MAX_PAGE_SIZE = 100


def _exact(request) -> bool:
    """?exact=1: search the words as typed, without typo correction ("search instead for ...")."""
    return request.GET.get("exact") == "1"


@replica_reads
def product_list_view(request):
    """The catalogue, and keyword search over it: ?q=words&category=slug&min_price=&max_price=&page=
    (&exact=1: no typo correction)"""
    form = ProductSearchForm(request.GET)
    if not form.is_valid():
        if "category" in form.errors:  # a stale category link: the page it named is gone
            raise Http404(form.errors["category"][0])
        context = {"form": form, "page": None, "q": request.GET.get("q", "")[:200], "error": form.first_error()}
        return render(request, "catalog/product_list.html", context, status=400)
    data = form.cleaned_data
    results = product_search(
        query=data["q"],
        category=data["category"],
        min_price=data["min_price"],
        max_price=data["max_price"],
        correct=not _exact(request),
    )
    paginator = Paginator(results.pages(), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "category": data["category"],
        "q": results.query,
        "corrected_query": results.corrected_query,  # "Showing results for ...; search instead for <q>"
        "match": results.match,
        "more_than_count": getattr(paginator.object_list, "capped", False),  # "1,000+ products"
        "similar_words": results.match == Match.SIMILAR,
        "min_price": data["min_price"],
        "max_price": data["max_price"],
        "filtered": bool(results.query or data["min_price"] is not None or data["max_price"] is not None),
    }
    return render(request, "catalog/product_list.html", context)


def _int_param(request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number. Received: {raw[:50]!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bounds}. Received: {value}")
    return value


@product_list_schema
@json_api_view(["GET"], not_allowed="Use GET.")
@replica_reads
def api_product_list(request):
    """GET /api/products?q=&category=&min_price=&max_price=&page=&page_size=&exact= : the catalogue page as
    JSON. `corrected_query` is what was searched when typos in `q` were corrected (null otherwise), and
    `corrections` the words it changed; exact=1 searches `q` as typed."""
    if request.method not in ("GET", "HEAD"):
        return json_error("Use GET.", 405)
    form = ProductSearchForm(request.GET)
    if not form.is_valid():
        return json_error(form.first_error(), 400)
    try:
        number = _int_param(request, "page", 1, 1)
        size = _int_param(request, "page_size", API_PAGE_SIZE, 1, API_MAX_PAGE_SIZE)
    except ValueError as exc:
        return json_error(str(exc), 400)
    data = form.cleaned_data
    results = product_search(
        query=data["q"],
        category=data["category"],
        min_price=data["min_price"],
        max_price=data["max_price"],
        correct=not _exact(request),
    )
    paginator = Paginator(results.pages(), size)
    try:
        page = paginator.page(number)
    except (EmptyPage, PageNotAnInteger):
        more = (
            " (the first ones of more matches: narrow the words or filters)"
            if getattr(paginator.object_list, "capped", False)
            else ""
        )
        return json_error(f"There is no page {number}: the results have {paginator.num_pages} page(s){more}.", 404)
    ranked = results.match != Match.ALL
    return JsonResponse(
        {
            "query": results.query,
            "corrected_query": results.corrected_query,
            "corrections": [{"word": c.word, "corrected": c.corrected} for c in results.corrections],
            "match": results.match,
            "count": paginator.count,
            "count_exact": not getattr(paginator.object_list, "capped", False),  # False: at least `count` match
            "page": page.number,
            "num_pages": paginator.num_pages,
            "results": [
                {
                    "id": product.pk,
                    "sku": product.sku,
                    "title": product.title,
                    "category": product.category.slug,
                    "price": str(product.price) if product.price is not None else None,
                    "url": request.build_absolute_uri(product.get_absolute_url()),
                    "image_url": request.build_absolute_uri(product.primary_image.image.url)
                    if product.primary_image
                    else None,
                    "rank": float(product.rank) if ranked else None,
                }
                for product in page.object_list
            ],
        }
    )


def _similar_context(request, pk: int, k: int) -> dict:
    """The product, and how many similar items its template asks search for (the similar_items tag)."""
    product = get_object_or_404(Product.objects.browsable(), pk=pk)
    same_category = request.GET.get("same_category") == "1"
    more_url = reverse("catalog:product_more_like_this", args=[product.pk]) + (
        "?same_category=1" if same_category else ""
    )
    return {"product": product, "similar_k": k, "same_category": same_category, "more_url": more_url}


@replica_reads
def product_detail_view(request, pk: int):
    context = _similar_context(request, pk, SIMILAR_ON_PAGE)
    context["images"] = list(context["product"].images.all())
    return render(request, "catalog/product_detail.html", context)


@replica_reads
def product_more_like_this_view(request, pk: int):
    """The product's 48 nearest neighbours: where "More like this" on a product page leads."""
    return render(request, "catalog/product_similar.html", _similar_context(request, pk, MORE_LIKE_THIS))
