"""The site holds up: control characters in any query parameter of any path are a 400, a database
with no connection left is a 503 with Retry-After, the demo server keeps a bounded number of
connections, and `make run` installs what it needs (but not the tests' browser)."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import TestCase, TransactionTestCase
from django.urls import URLPattern, URLResolver, get_resolver

from catalog.tests.factories import product_create, shape_png
from devtools.demo import web_server_command
from ml.models import ModelVersion
from search.models import IndexJob
from search.tests.processes import ROOT, child_env, database_url, free_port, wait_for

CONTROL = ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f"]


def _paths(resolver: URLResolver, prefix: str = "") -> list[str]:
    """Every routed path, with 1 for each path parameter (the tests create objects with pk 1... n)."""
    out = []
    for pattern in resolver.url_patterns:
        route = str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            out += _paths(pattern, prefix + route)
        elif isinstance(pattern, URLPattern):
            out.append(prefix + route)
    return out


def _concrete(route: str, ids: dict[str, int]) -> str | None:
    import re

    route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")
    if "(?P<path>.*)" in route:  # media
        return None
    if "(?P<" in route or "(?:" in route:  # admin's regex routes (app index, redirects): one sample each
        route = re.sub(r"\(\?P<app_label>[^)]*\)", "catalog", route)
        route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
        if "(" in route:
            return None
    route = re.sub(r"<(?:int:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), route)
    route = re.sub(r"<path:\w+>", "1", route)
    return "/" + route


class QueryParameterGuardTests(TestCase):
    def setUp(self):
        import logging

        logging.disable(logging.WARNING)  # a "Bad Request" line per request otherwise
        self.addCleanup(logging.disable, logging.NOTSET)

    @classmethod
    def setUpTestData(cls):
        cls.product = product_create(images=[shape_png()])
        cls.version = ModelVersion.objects.create(architecture="classifier", status=ModelVersion.Status.SUCCEEDED)
        cls.job = IndexJob.objects.create(model_version=cls.version)
        cls.user = User.objects.create_superuser("root", "root@example.com", "pw")

    def test_control_characters_in_any_query_parameter_of_any_path_are_a_400(self):
        self.client.force_login(self.user)
        paths = sorted({p for p in (_concrete(r, {"pk": self.product.pk}) for r in _paths(get_resolver())) if p})
        self.assertGreater(len(paths), 30)  # the catalogue, search, the API and the admin
        for path in paths:
            for char in CONTROL:
                for query in ({"category": f"a{char}b"}, {"q": char}, {f"k{char}": "1"}):
                    with self.subTest(path=path, query=query):
                        response = self.client.get(path, query)
                        self.assertEqual(response.status_code, 400, response.content[:300])
                        if path.startswith("/api/"):
                            self.assertIn("control character", response.json()["error"])

    def test_the_catalogue_filter_with_a_nul_was_a_500_and_is_now_a_400_page(self):
        response = self.client.get("/?category=a%00b")
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "control character", status_code=400)

    def test_ordinary_parameters_still_work(self):
        self.assertEqual(self.client.get("/", {"category": "", "page": "2"}).status_code, 200)
        self.assertEqual(self.client.get(f"/api/products/{self.product.pk}/similar", {"k": "3"}).status_code, 503)


class WebServer:
    """The demo's web server command as a child process on the test database."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="lookalike-web-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            web_server_command(str(self.port)),
            cwd=ROOT,
            env=child_env(DEBUG="1", **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up():
            if self.process.poll() is not None:
                raise AssertionError(Path(self.log.name).read_text()[-3000:])
            try:
                with http_get(self.port, "/favicon-probe") as _:
                    return True
            except OSError:
                return False

        wait_for(up, timeout=60, what="the web server")

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)


class http_get:
    def __init__(self, port: int, path: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.path = path

    def __enter__(self):
        self.conn.request("GET", self.path)
        return self.conn.getresponse()

    def __exit__(self, *exc):
        self.conn.close()


class DemoServerTests(TransactionTestCase):
    def server(self, **env) -> WebServer:
        server = WebServer(**env)
        self.addCleanup(server.stop)
        return server

    def server_connections(self, *exclude: int) -> list[tuple]:
        """Client connections to the test database other than this test's own (autovacuum is not a client)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, application_name, state, backend_type FROM pg_stat_activity"
                " WHERE datname = current_database() AND backend_type = 'client backend'"
                " AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
                [list(exclude) or [0]],
            )
            return cursor.fetchall()

    def test_the_demo_server_keeps_a_bounded_number_of_database_connections_under_sustained_use(self):
        import threading

        product = product_create(images=[shape_png()])
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            test_pid = cursor.fetchone()[0]
        server = self.server()
        statuses, peak, done = [], [[]], threading.Event()

        def sample():
            from django.db import connections

            while not done.is_set():
                rows = self.server_connections(test_pid)
                if len(rows) > len(peak[0]):
                    peak[0] = rows
                time.sleep(0.02)
            connections.close_all()

        def client(n: int):
            for i in range(8):
                path = f"/api/products/{product.pk}/similar?k={1 + i % 5}" if (n + i) % 2 else "/"
                statuses.append(server.get(path)[0])

        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=client, args=(n,)) for n in range(32)]  # 32 users at once, 256 requests
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
        done.set()
        sampler.join(timeout=10)
        self.assertEqual(sorted(set(statuses)), [200, 503])  # 503: no model is active, as the API says
        self.assertEqual(len(statuses), 256)
        # 2 workers x 4 threads, one connection each (this test's own two are not counted, nor
        # autovacuum): runserver had one per request in flight (86 here when it served the same load).
        self.assertLessEqual(len(peak[0]), 8, peak[0])

    def test_a_database_with_no_connection_left_answers_503_with_retry_after(self):
        role = f"lookalike_full_{uuid.uuid4().hex[:8]}"
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')  # as full as a database gets
        except Exception as exc:  # noqa: BLE001 - a server where we may not create roles
            self.skipTest(f"cannot create a role here: {exc}")
        self.addCleanup(self._drop_role, role)
        url = database_url()
        user = settings.DATABASES["default"]["USER"] or ""
        full = url.replace(f"//{user}", f"//{role}", 1) if user else url.replace("//", f"//{role}@", 1)
        server = self.server(DATABASE_URL=full)
        for path in ("/", "/products/1/", "/search/", "/api/products/1/similar"):
            with self.subTest(path=path):
                status, headers, body = server.get(path)
                self.assertEqual(status, 503, body[:500])
                self.assertEqual(headers.get("Retry-After"), "30")
                self.assertNotIn(b"Traceback", body)
                self.assertIn(b"try again", body)

    def _drop_role(self, role: str) -> None:
        time.sleep(0.5)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')


class MakeRunInstallsTests(TestCase):
    def run_deps(self, *args: str) -> str:
        """.ci/system-deps with chromium absent and apt-get replaced by a stub that logs its arguments."""
        bin_dir = Path(tempfile.mkdtemp(prefix="lookalike-path-"))
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", str(bin_dir)], check=False))
        log = bin_dir / "apt.log"
        for name in ("bash", "python3", "id", "seq", "sleep", "env", "cat"):
            found = subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout.strip()
            if found:
                (bin_dir / name).symlink_to(found)
        for stub, body in (("apt-get", f'echo "$@" >> {log}\n'), ("sudo", '"$@"\n')):
            path = bin_dir / stub
            path.write_text("#!" + str(bin_dir / "bash") + "\n" + body)
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
        env = {
            "PATH": str(bin_dir),
            "FASHION_MNIST_DIR": "/nonexistent",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11",
            "HOME": str(bin_dir),
        }
        result = subprocess.run(
            ["bash", str(ROOT / ".ci" / "system-deps"), *args], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return log.read_text() if log.exists() else ""

    def test_make_run_installs_system_packages_but_not_the_tests_browser(self):
        self.assertIn("chromium", self.run_deps())
        self.assertNotIn("chromium", self.run_deps("--no-browser"))

    def test_make_run_checks_system_packages_before_making_the_venv(self):
        dry = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
        self.assertIn("system-deps --no-browser", dry)
        self.assertLess(dry.index("system-deps --no-browser"), dry.index("pip install"))
