"""Per-client request limits on the Django cache (Redis in production): a fixed-window counter.

The cache is shared by every web process, so the limit holds across gunicorn workers. When the cache
is unreachable the request is allowed (and logged): a Redis outage must not take search down.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int


def rate_parse(rate: str) -> Rate | None:
    """ "30/minute", "5/10second", "1000/hour" -> Rate; "" or "0" -> None (no limit)."""
    if not rate or rate.strip() in {"0", "off", "none"}:
        return None
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"A rate looks like '30/minute' or '5/10second'. Received: rate={rate!r}")
    limit, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if limit < 1 or multiple < 1:
        raise ValueError(f"A rate needs a positive count and period. Received: rate={rate!r}")
    return Rate(limit=limit, seconds=multiple * _PERIODS[unit])


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or with RATE_LIMIT_TRUSTED_PROXIES = n > 0 (that many
    proxies in front, each appending to X-Forwarded-For) the address the outermost proxy saw.
    Entries a client wrote itself sit further left and are never used."""
    proxies = getattr(settings, "RATE_LIMIT_TRUSTED_PROXIES", 0)
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def rate_limit_check(*, request: HttpRequest, scope: str, rate: str) -> int | None:
    """Count this request against `rate` for its client; returns seconds to wait when over the
    limit, else None."""
    parsed = rate_parse(rate)
    if parsed is None:
        return None
    now = time.time()
    window = int(now // parsed.seconds)
    key = f"ratelimit:{scope}:{client_address(request)}:{parsed.seconds}:{window}"
    try:
        cache.add(key, 0, timeout=parsed.seconds + 1)
        count = cache.incr(key)
    except Exception:  # noqa: BLE001 - the cache being down is logged and lets the request through
        logger.warning("Rate limit for %s not checked: the cache is unavailable", scope, exc_info=True)
        return None
    if count <= parsed.limit:
        return None
    return max(1, int((window + 1) * parsed.seconds - now + 0.999))
