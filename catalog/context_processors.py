from django.core.cache import cache
from django.db import DatabaseError

from .selectors import category_list


def navigation(request):
    """Categories for the top navigation, cached briefly: every page shows them."""
    if request.path.startswith("/admin/") or request.path.startswith("/api/"):
        return {}
    try:
        categories = cache.get("nav-categories")
        if categories is None:
            categories = [(c.slug, c.name, c.product_count) for c in category_list()]
            cache.set("nav-categories", categories, 60)
    except (DatabaseError, ConnectionError):
        categories = []
    return {"nav_categories": categories}
