"""Database errors in a request, on the real server: a lost connection (the backend terminated
mid-request, or psycopg2's plain DatabaseError for a server that closed the connection) is a 503
with Retry-After; a statement timeout or a deadlock is a logged error (500), never "busy"; a
deadlock in a read-only request (GET, HEAD) is retried once."""

from __future__ import annotations

import threading

import psycopg2
from django.db import connection, connections, transaction
from django.http import HttpResponse
from django.test import TestCase, TransactionTestCase, override_settings
from django.urls import include, path

from catalog.models import Category

attempts: list[int] = []
others: list[threading.Thread] = []  # the deadlock's other side, joined by the test


def terminated_mid_request(request):
    """The backend serving this request dies between two queries (as a primary failing over)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("unreachable")


def closed_unexpectedly(request):
    """What psycopg2 raises when libpq reports the lost connection before it marks the connection bad:
    a plain DatabaseError without a SQLSTATE (Django wraps it as django.db.DatabaseError)."""
    with connection.wrap_database_errors:
        raise psycopg2.DatabaseError(
            "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n"
        )


def statement_timeout(request):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 50")
        cursor.execute("SELECT pg_sleep(2)")
    return HttpResponse("unreachable")


def deadlock_once(request):
    """The first attempt deadlocks for real with another connection (and is the one PostgreSQL
    aborts: it checks for deadlocks after 100 ms, the other after 10 s); later ones succeed."""
    attempts.append(1)
    a, b = Category.objects.order_by("pk").values_list("pk", flat=True)[:2]
    if len(attempts) > 1:
        return HttpResponse(f"attempt {len(attempts)}")
    locked_b = threading.Event()

    def other():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '10s'")
                cursor.execute("SELECT 1 FROM catalog_category WHERE id = %s FOR UPDATE", [b])
                locked_b.set()
                cursor.execute("SELECT 1 FROM catalog_category WHERE id = %s FOR UPDATE", [a])
        finally:
            connection.close()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL deadlock_timeout = '100ms'")
        cursor.execute("SELECT 1 FROM catalog_category WHERE id = %s FOR UPDATE", [a])
        others.append(threading.Thread(target=other, daemon=True))
        others[-1].start()
        locked_b.wait(timeout=10)
        cursor.execute("SELECT 1 FROM catalog_category WHERE id = %s FOR UPDATE", [b])
    return HttpResponse("unreachable")


urlpatterns = [
    path("terminated/", terminated_mid_request),
    path("closed/", closed_unexpectedly),
    path("api/closed/", closed_unexpectedly),
    path("timeout/", statement_timeout),
    path("deadlock/", deadlock_once),
    path("", include("config.urls")),  # the error pages link to the site's pages
]


@override_settings(ROOT_URLCONF=__name__)
class ConnectionLostTests(TransactionTestCase):
    def tearDown(self):
        connection.close()  # the request's connection was lost (the test client does not close it)
        super().tearDown()

    def assertUnavailable(self, response):
        self.assertEqual(response.status_code, 503, response.content[:300])
        self.assertEqual(response["Retry-After"], "30")
        self.assertIn(b"try again", response.content)

    def test_the_backend_terminated_mid_request_is_a_503(self):
        with self.assertLogs("config.views", "ERROR"):
            self.assertUnavailable(self.client.get("/terminated/"))

    def test_a_server_that_closed_the_connection_unexpectedly_is_a_503_not_a_500(self):
        with self.assertLogs("config.views", "ERROR"):
            self.assertUnavailable(self.client.get("/closed/"))
            api = self.client.get("/api/closed/")
        self.assertUnavailable(api)
        self.assertIn("error", api.json())


@override_settings(ROOT_URLCONF=__name__)
class QueryErrorTests(TransactionTestCase):
    def setUp(self):
        attempts.clear()
        self.addCleanup(lambda: [thread.join(timeout=20) for thread in others])
        Category.objects.create(name="A", slug="a")
        Category.objects.create(name="B", slug="b")

    def assertLoggedError(self, logs, what: str):
        self.assertTrue(any(what in line for line in logs.output), logs.output)
        self.assertFalse(any("unavailable" in line.lower() for line in logs.output), logs.output)

    def test_a_statement_timeout_is_a_logged_500_not_database_unavailable(self):
        with self.assertLogs("config.middleware", "ERROR") as logs:
            response = self.client.get("/timeout/")
        self.assertEqual(response.status_code, 500)
        self.assertFalse(response.has_header("Retry-After"))
        self.assertNotIn(b"statement timeout", response.content)  # no database text reaches a visitor
        self.assertLoggedError(logs, "statement timeout")

    def test_a_deadlock_in_a_read_only_request_is_retried_once(self):
        with self.assertLogs("config.middleware", "WARNING") as logs:
            response = self.client.get("/deadlock/")
        self.assertEqual((response.status_code, response.content), (200, b"attempt 2"))
        self.assertEqual(len(attempts), 2)
        self.assertTrue(any("deadlock" in line.lower() and "retr" in line for line in logs.output), logs.output)

    def test_a_deadlock_in_a_post_is_a_logged_500_and_not_retried(self):
        with self.assertLogs("config.middleware", "ERROR") as logs:
            response = self.client.post("/deadlock/")
        self.assertEqual(response.status_code, 500)
        self.assertFalse(response.has_header("Retry-After"))
        self.assertEqual(len(attempts), 1)
        self.assertLoggedError(logs, "deadlock")


class ClassificationTests(TestCase):
    def test_only_connection_loss_counts_as_unavailable(self):
        from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError

        from config.middleware import database_connection_lost

        def wrapped(driver_exc):
            try:
                with connection.wrap_database_errors:
                    raise driver_exc
            except Exception as exc:  # noqa: BLE001 - Django's wrapper of the driver error
                return exc

        self.assertTrue(database_connection_lost(InterfaceError("connection already closed")))
        self.assertTrue(database_connection_lost(wrapped(psycopg2.OperationalError("could not connect to server"))))
        self.assertTrue(
            database_connection_lost(wrapped(psycopg2.DatabaseError("server closed the connection unexpectedly")))
        )
        self.assertIsInstance(wrapped(psycopg2.DatabaseError("x")), DatabaseError)
        self.assertFalse(
            database_connection_lost(
                wrapped(psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"))
            )
        )
        self.assertFalse(database_connection_lost(wrapped(psycopg2.errors.DeadlockDetected("deadlock detected"))))
        self.assertFalse(database_connection_lost(OperationalError("a bare Django error")))
        self.assertFalse(database_connection_lost(IntegrityError("duplicate key")))
        self.assertFalse(database_connection_lost(ValueError("not a database error")))
