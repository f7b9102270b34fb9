"""Shared helpers for bench/setup_data.py, indexing.py, search.py and load.py.

Every benchmark runs against its own database, media and model folders under var/ (never the dev
database or the tests'), production settings (DEBUG=0) and Redis databases 9/8 (7/6 for --quick).
`configure()` sets that environment before Django starts; `bench_env()` gives it to subprocesses
(Celery workers, gunicorn); `write_report()` writes bench/results/<name>.json in the shape
bench/retrieval.py uses (date, command, machine, versions, wall time) plus the load average.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK_PRODUCTS = 5000

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_env(*, quick: bool) -> dict[str, str]:
    """The environment every bench process (this one, workers, gunicorn) runs with."""
    tag = "bench-quick" if quick else "bench"
    return {
        "LOOKALIKE_PGDATA": str(ROOT / "var" / f"{tag}-pgdata"),
        "MEDIA_ROOT": str(ROOT / "var" / f"{tag}-media"),
        "MODELS_ROOT": str(ROOT / "var" / f"{tag}-models"),
        "STATIC_ROOT": str(ROOT / "var" / "bench-static"),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{7 if quick else 9}",
        "CACHE_URL": f"redis://127.0.0.1:6379/{6 if quick else 8}",
        # Production settings (no query log, manifest static files), served over plain HTTP locally.
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-secret",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        # Photo search is rate-limited per client in production; the benchmark measures capacity, so
        # the limit is raised far beyond what 16 clients can send, still counted in Redis like in
        # production (docs/benchmarks.md, "Load").
        "SEARCH_RATE_LIMIT": os.environ.get("SEARCH_RATE_LIMIT", "1000000/minute"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def configure(*, quick: bool) -> None:
    """Point this process at the bench database, start it (the embedded server) and Django."""
    for key, value in bench_env(quick=quick).items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    from config.database import database_ensure

    database_ensure()  # the settings start no database themselves
    django.setup()
    from django.core.management import call_command

    # Others' migrations land while benchmarks are being written: the bench database follows.
    call_command("migrate", verbosity=0)


def static_collect() -> None:
    """collectstatic into var/bench-static: DEBUG=0 serves hashed names from its manifest."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


def subprocess_env(*, quick: bool) -> dict[str, str]:
    """This process's environment with the bench defaults filled in: children (Celery workers,
    gunicorn) use the same database, folders and Redis databases as this process, including ones
    given in the environment (`CELERY_BROKER_URL=redis://127.0.0.1:6379/15 python bench/...`)."""
    env = dict(os.environ)
    for key, value in bench_env(quick=quick).items():
        env.setdefault(key, value)
    return env


# --- measuring ----------------------------------------------------------------------------------


class LoadSampler:
    """os.getloadavg() every `every` seconds in a thread: the CPU is shared with other engineers."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(float(np.mean(s)), 2), "max": round(max(s), 2)}


def percentiles_ms(seconds: list[float] | np.ndarray) -> dict:
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "mean": None}
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
    }


def fmt(value, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, heading, format spec). Keys may be dotted ("db.p50")."""

    def get(row, key):
        for part in key.split("."):
            row = row.get(part) if isinstance(row, dict) else None
        return row

    cells = [[heading for _, heading, _ in columns]]
    for row in rows:
        cells.append([fmt(get(row, key), spec) for key, _, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


# --- reporting ----------------------------------------------------------------------------------


def versions() -> dict:
    import django
    import numpy

    out = {"python": platform.python_version(), "django": django.get_version(), "numpy": numpy.__version__}
    for module in ("tensorflow", "keras", "celery", "gunicorn", "psycopg2", "pgvector"):
        try:
            mod = __import__(module)
            out[module] = getattr(mod, "__version__", "?")
        except ImportError:
            pass
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            out["postgresql"] = cursor.fetchone()[0]
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            out["pgvector_extension"] = row[0] if row else None
    except Exception as exc:  # noqa: BLE001 - versions are informative
        out["postgresql"] = f"unknown ({exc})"
    return out


def machine() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from ml.cpu import cpu_info

    name, flags = cpu_info()
    cpu = name or platform.processor() or platform.machine()
    # Time figures depend on these: TensorFlow trains in bfloat16 only with avx512_bf16 (ml.precision).
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {
        "platform": platform.platform(),
        "processor": cpu,
        "cpu_flags": vector,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem,
        "gpu": None,
        "note": "CPU shared with other engineers' test runs: see load_average",
    }


def write_report(
    name: str, *, quick: bool, argv: list[str], started: float, load: dict, script: str | None = None, **body
) -> Path:
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([f"python bench/{script or name}.py", *argv]),
        "machine": machine(),
        "versions": versions(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "load_average": {**load, "at_end": [round(x, 2) for x in os.getloadavg()]},
        **body,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'_quick' if quick else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


class DbTimer:
    """Sums the round-trip time of every SQL statement run while it is installed."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t
