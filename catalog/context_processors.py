import logging

from django.core.cache import cache

from .selectors import category_list

logger = logging.getLogger(__name__)


def navigation(request):
    """Categories for the top navigation, cached briefly: every page shows them."""
    if request.path.startswith("/admin/") or request.path.startswith("/api/"):
        return {}
    try:
        categories = cache.get("nav-categories")
        if categories is None:
            categories = [(c.slug, c.name, c.product_count) for c in category_list()]
            cache.set("nav-categories", categories, 60)
    except Exception as exc:  # noqa: BLE001 - a cache or database outage must not take every page down
        logger.warning("Navigation categories unavailable: %s", exc)
        categories = []
    # The words of a keyword search stay in the header's box (a view may pass its own search_q).
    words = request.GET.get("q", "")[:200]
    # A refused query (control characters: config's request guard answers 400) is not echoed back.
    words = "" if any(ord(c) < 32 or ord(c) == 127 for c in words) else words
    return {"nav_categories": categories, "search_q": words}
