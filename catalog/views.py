from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from .models import Category, Product
from .selectors import product_list

PAGE_SIZE = 48
SIMILAR_ON_PAGE = 12  # fills rows of 6, 4, 3 and 2 columns alike
MORE_LIKE_THIS = 48


def product_list_view(request):
    category = None
    slug = request.GET.get("category", "").strip()
    if slug:
        category = get_object_or_404(Category, slug=slug)
    paginator = Paginator(product_list(category=category), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "catalog/product_list.html", {"page": page, "category": category})


def _similar_context(request, pk: int, k: int) -> dict:
    """The product, and how many similar items its template asks search for (the similar_items tag)."""
    product = get_object_or_404(Product.objects.browsable(), pk=pk)
    same_category = request.GET.get("same_category") == "1"
    more_url = reverse("catalog:product_more_like_this", args=[product.pk]) + ("?same_category=1" if same_category else "")
    return {"product": product, "similar_k": k, "same_category": same_category, "more_url": more_url}


def product_detail_view(request, pk: int):
    context = _similar_context(request, pk, SIMILAR_ON_PAGE)
    context["images"] = list(context["product"].images.all())
    return render(request, "catalog/product_detail.html", context)


def product_more_like_this_view(request, pk: int):
    """The product's 48 nearest neighbours: where "More like this" on a product page leads."""
    return render(request, "catalog/product_similar.html", _similar_context(request, pk, MORE_LIKE_THIS))
