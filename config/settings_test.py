"""The test suite's settings: the base settings with the test database, Redis databases and folders.

`manage.py test` and pytest (pytest.ini) choose this module explicitly. Every value here can still
be overridden from the environment, as in the base settings.
"""

import os
from pathlib import Path

from .settings import *  # noqa: F403
from .settings import BASE_DIR, DATABASES, LOGGING, env_list

TESTING = True

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
if DATABASES:
    # Separate names let parallel test runs (CI shards, several checkouts) share one server.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_lookalike")}
if not os.environ.get("CACHE_URL", "").startswith("locmem"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/14"),
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "test-media"))
MODELS_ROOT = Path(os.environ.get("MODELS_ROOT", BASE_DIR / "var" / "test-models"))
# Every test request comes from 127.0.0.1: rate limiting is off unless a test turns it on.
SEARCH_RATE_LIMIT = os.environ.get("SEARCH_RATE_LIMIT", "")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": os.environ.get("LOG_LEVEL", "WARNING")}}
