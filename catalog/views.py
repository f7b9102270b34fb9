from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from .models import Category, Product
from .selectors import product_list

PAGE_SIZE = 48


def product_list_view(request):
    category = None
    slug = request.GET.get("category", "").strip()
    if slug:
        category = get_object_or_404(Category, slug=slug)
    paginator = Paginator(product_list(category=category), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "catalog/product_list.html", {"page": page, "category": category})


def product_detail_view(request, pk: int):
    from search.selectors import product_similar  # search depends on catalog, not the other way round

    product = get_object_or_404(Product.objects.browsable(), pk=pk)
    same_category = request.GET.get("same_category") == "1"
    similar = product_similar(product=product, same_category=same_category)
    return render(
        request,
        "catalog/product_detail.html",
        {"product": product, "images": list(product.images.all()), "similar": similar, "same_category": same_category},
    )
