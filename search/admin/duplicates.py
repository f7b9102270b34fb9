"""The admin's near-duplicates page (Search → Near-duplicate products): pairs of different products
whose photos are within a distance of each other under the active model (search.queries.duplicates)."""

from __future__ import annotations

import logging
import math

from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.template.response import TemplateResponse

from ..models import ImageEmbedding, NearDuplicate
from ..queries.duplicates import (
    THRESHOLD_FRACTION,
    duplicate_pairs,
    duplicate_rows,
    duplicate_threshold_default,
)
from ..serving.versions import active_model_version

logger = logging.getLogger(__name__)

SHOWN = 200
CACHE_SECONDS = 3600


def _cached(key: str, compute):
    """The cache saves recomputing after each click; an outage only costs the recomputation."""
    try:
        value = cache.get(key)
    except Exception as exc:  # noqa: BLE001
        logger.warning("Cache unavailable for %s: %s", key, exc)
        return compute()
    if value is None:
        value = compute()
        try:
            cache.set(key, value, CACHE_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("Cache unavailable for %s: %s", key, exc)
    return value


def _parse_threshold(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"The threshold must be a number, like 0.5. Received: {raw[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"The threshold must be a distance of 0 or more. Received: {raw[:40]!r}")
    return value


@admin.register(NearDuplicate)
class NearDuplicateAdmin(admin.ModelAdmin):
    """One page, no rows of its own: whoever may view products may see their near-duplicates."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm("catalog.view_product")

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Near-duplicate products",
        }
        version = active_model_version()
        context.update(version=version, fraction=THRESHOLD_FRACTION)
        if version is None:
            return TemplateResponse(request, "admin/search/nearduplicate/change_list.html", context)
        stamp = ImageEmbedding.objects.filter(model_version=version).aggregate(n=Count("id"), at=Max("updated_at"))
        key = f"near-duplicates:v{version.pk}:{stamp['n']}:{stamp['at'].timestamp() if stamp['at'] else 0}"
        default = _cached(key + ":threshold", lambda: duplicate_threshold_default(model_version=version))
        raw = request.GET.get("threshold", "").strip()
        status = 200
        threshold = default
        if raw:
            try:
                threshold = _parse_threshold(raw)
            except ValueError as exc:
                context["threshold_error"] = str(exc)
                status = 400
        context.update(default_threshold=default, threshold=threshold, threshold_raw=raw)
        if threshold is not None and status == 200:
            pairs = _cached(
                f"{key}:pairs:{threshold!r}", lambda: duplicate_pairs(model_version=version, threshold=threshold)
            )
            context.update(pair_count=len(pairs), rows=duplicate_rows(pairs[:SHOWN]), shown=SHOWN)
        return TemplateResponse(request, "admin/search/nearduplicate/change_list.html", context, status=status)
