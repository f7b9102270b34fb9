"""The demo's supervisor on real processes: a failed step, SIGTERM, Ctrl-C or a process that exits
stops everything it started, the redis-server it started and the children's own children included.
Redis is found with redis-py: one that wants a password is running, and no second one is started.
The admin password goes to a file of mode 600, and only its path is said."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import SimpleTestCase, TransactionTestCase

from devtools import demo
from devtools.demo import REDIS_NONE, REDIS_NOT_REDIS, REDIS_REFUSED, REDIS_UP, DemoError, redis_probe
from devtools.supervisor import Supervisor

ROOT = Path(settings.BASE_DIR)
BROKER = os.environ.get("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a reparented child may wait to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class PasswordRedis:
    """A real redis-server on a free port that requires a password."""

    password = "not-the-default"

    def __enter__(self):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tempfile.gettempdir(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        wait_for(lambda: redis_probe(url, timeout=0.3)[0] == REDIS_UP, timeout=10, what="the password Redis")
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


class RedisProbeTests(SimpleTestCase):
    def test_the_test_redis_is_up(self):
        self.assertEqual(redis_probe(BROKER)[0], REDIS_UP)

    def test_a_redis_that_wants_a_password_is_running_not_absent(self):
        with PasswordRedis() as server:
            for url in (f"redis://127.0.0.1:{server.port}/0", f"redis://:wrong@127.0.0.1:{server.port}/0"):
                with self.subTest(url=url):
                    state, detail = redis_probe(url)
                    self.assertEqual(state, REDIS_REFUSED, detail)
            self.assertEqual(redis_probe(f"redis://:{server.password}@127.0.0.1:{server.port}/0")[0], REDIS_UP)

    def test_the_demo_starts_no_second_redis_where_one_wants_a_password(self):
        with PasswordRedis() as server, Supervisor() as sv:
            url = f"redis://127.0.0.1:{server.port}/0"
            with mock.patch.dict(os.environ, {"CELERY_BROKER_URL": url}):
                with self.assertRaisesRegex(DemoError, "Put its password in CELERY_BROKER_URL"):
                    demo.choose_broker(sv)
            self.assertEqual(sv.children, [])

    def test_nothing_listening_and_a_port_taken_by_something_else(self):
        self.assertEqual(redis_probe(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)[0], REDIS_NONE)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]

            def answer_like_http():
                for _ in range(3):  # redis-py's PING, its retry, the port check
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        return
                    with conn:
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

            threading.Thread(target=answer_like_http, daemon=True).start()
            url = f"redis://127.0.0.1:{port}/0"
            self.assertEqual(redis_probe(url, timeout=0.5)[0], REDIS_NOT_REDIS)
            with (
                tempfile.TemporaryDirectory() as var,
                mock.patch.object(demo, "VAR", Path(var)),
                mock.patch.dict(os.environ, {"CELERY_BROKER_URL": url}),
                Supervisor() as sv,
            ):
                self.assertEqual(demo.choose_broker(sv), "filesystem://")  # not a redis-server on a taken port
                self.assertEqual(sv.children, [])


# The supervisor run as `make run` runs it, with the demo's steps replaced by these; each child
# writes its pid and the pid of a grandchild that ignores SIGTERM (as a stuck pool process would).
SLEEPER = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(sys.argv[1], "a") as out:
        out.write(f"{os.getpid()} {grandchild.pid}\\n")
    time.sleep(600)
""")
RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from devtools import demo
    demo.VAR = Path(sys.argv[1])  # the redis-server's log and dump go there
    steps = [demo.Step(**step) for step in json.loads(sys.argv[2])]
    sys.exit(demo.supervise(steps, grace_seconds=2))
""")


class SupervisorProcessTests(SimpleTestCase):
    def setUp(self):
        self.var = Path(tempfile.mkdtemp(prefix="lookalike-demo-"))
        self.pids_file = self.var / "pids"
        self.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        self.sleeper = {
            "name": "sleeper",
            "argv": [sys.executable, "-c", SLEEPER, str(self.pids_file)],
            "background": True,
        }

    def supervise(self, steps: list[dict]) -> subprocess.Popen:
        env = {
            **os.environ,
            "CELERY_BROKER_URL": self.redis_url,
            "DATABASE_URL": "postgres://unused@127.0.0.1/unused",
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(self.var), json.dumps(steps)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.addCleanup(self._kill_all, process)
        return process

    def _kill_all(self, process: subprocess.Popen) -> None:
        for pid in [process.pid, *self.pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(self.var)], check=False)

    def pids(self) -> list[int]:
        if not self.pids_file.exists():
            return []
        return [int(pid) for pid in self.pids_file.read_text().split()]

    def started(self, count: int) -> tuple[list[int], int]:
        """Waits until `count` children wrote their pids and the supervisor's redis-server answers."""
        pids = wait_for(lambda: len(self.pids()) >= count and self.pids(), timeout=60, what="the children")
        wait_for(lambda: redis_probe(self.redis_url, timeout=0.3)[0] == REDIS_UP, timeout=30, what="the redis-server")
        redis_pid = redis.Redis.from_url(self.redis_url).info("server")["process_id"]
        self.assertTrue(all(alive(pid) for pid in [*pids, redis_pid]))
        return pids, redis_pid

    def assert_all_gone(self, process: subprocess.Popen, pids: list[int], redis_pid: int, *, status: int) -> str:
        output, _ = process.communicate(timeout=60)
        self.assertEqual(process.returncode, status, output)
        wait_for(lambda: not any(alive(pid) for pid in [*pids, redis_pid]), timeout=10, what="every child to be gone")
        self.assertEqual(redis_probe(self.redis_url, timeout=0.5)[0], REDIS_NONE, output)
        return output

    def test_a_failed_step_stops_everything_started(self):
        failing = {
            "name": "failing step",
            "argv": [sys.executable, "-c", "import time, sys; time.sleep(2); sys.exit(3)"],
        }
        process = self.supervise([self.sleeper, self.sleeper, failing])
        pids, redis_pid = self.started(4)
        output = self.assert_all_gone(process, pids, redis_pid, status=1)
        self.assertIn("failing step failed (exit status 3)", output)

    def test_sigterm_during_a_long_step_stops_it_and_everything_started(self):
        long_step = {"name": "training", "argv": [sys.executable, "-c", SLEEPER, str(self.pids_file)]}
        process = self.supervise([self.sleeper, long_step])
        pids, redis_pid = self.started(4)  # the sleeper and the long step, each with its grandchild
        process.send_signal(signal.SIGTERM)
        output = self.assert_all_gone(process, pids, redis_pid, status=0)
        self.assertIn("SIGTERM: stopping everything", output)

    def test_ctrl_c_while_running_stops_everything(self):
        process = self.supervise([self.sleeper])
        pids, redis_pid = self.started(2)
        os.killpg(process.pid, signal.SIGINT)  # what the terminal sends to its foreground group
        output = self.assert_all_gone(process, pids, redis_pid, status=0)
        self.assertIn("SIGINT: stopping everything", output)

    def test_a_background_process_that_exits_stops_the_rest(self):
        quits = {"name": "web server", "argv": [sys.executable, "-c", "import time; time.sleep(3)"], "background": True}
        process = self.supervise([self.sleeper, quits])
        pids, redis_pid = self.started(2)
        output = self.assert_all_gone(process, pids, redis_pid, status=1)
        self.assertIn("web server exited (status 0); stopping the rest", output)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "", safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    host = db["HOST"] or ""
    query = ""
    if not host or host.startswith("/"):
        query = "?host=" + quote(host or db.get("OPTIONS", {}).get("host", ""), safe="")
        host = ""
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{db['NAME']}{query}"


class AdminPasswordTests(TransactionTestCase):
    def test_the_password_is_written_to_a_private_file_and_only_its_path_is_said(self):
        folder = Path(tempfile.mkdtemp(prefix="lookalike-admin-"))
        self.addCleanup(subprocess.run, ["rm", "-rf", str(folder)], check=False)
        password_file = folder / "admin-password.txt"
        env = {"DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "config.settings", "CACHE_URL": "locmem://"}
        with mock.patch.dict(os.environ, env):
            said = demo.admin_login(Supervisor(), password_file)
            password = password_file.read_text().strip()
            self.assertEqual(stat.S_IMODE(password_file.stat().st_mode), 0o600)
            self.assertGreaterEqual(len(password), 16)
            self.assertEqual(said, f"password in {password_file}")
            self.assertNotIn(password, said)
            self.assertTrue(User.objects.get(username="admin").check_password(password))
            self.assertEqual(list(folder.iterdir()), [password_file])  # no other copy left behind

            self.assertEqual(demo.admin_login(Supervisor(), password_file), said)  # the user exists: file kept
            self.assertEqual(password_file.read_text().strip(), password)
            password_file.unlink()
            self.assertIn("changepassword admin", demo.admin_login(Supervisor(), password_file))
