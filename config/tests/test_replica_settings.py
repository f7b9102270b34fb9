"""Read replica settings and routing without a standby: DATABASE_REPLICA_URLS parsing and its errors,
settings that connect to nothing, the router's choices, a "replica" that is the primary itself, and
`devtools.demo --check-services` with replica URLs set. The real standby: search/tests/test_replicas.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from unittest import mock

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.test import SimpleTestCase, TransactionTestCase, override_settings
from django.urls import reverse

from catalog.models import Product
from config.celery import app
from config.database import replica_databases
from config.replicas import _call_on, replica_health, replica_health_forget
from config.settings import env_float
from search.models import ImageEmbedding

from .streaming_replica import database_alias_add, database_alias_remove

ROOT = settings.BASE_DIR


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_REPLICA")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "CACHE_URL": "locmem://", **env},
    )


class ReplicaSettingsTests(SimpleTestCase):
    def test_replica_urls_become_aliases_and_importing_the_settings_connects_to_nothing(self):
        code = (
            "import django, json; django.setup(); from django.conf import settings as s; from django.db import connections;"
            "print(json.dumps([s.DATABASE_REPLICAS, {a: [d['HOST'], d['PORT'], d['NAME'], d['OPTIONS'], d['TEST']['MIRROR'],"
            " d['CONN_HEALTH_CHECKS']] for a, d in s.DATABASES.items() if a != 'default'}, s.DATABASE_ROUTERS,"
            " [c.connection is None for c in connections.all()]]))"
        )
        result = python(
            code,
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL="postgres://shop@primary.invalid/shop",
            DATABASE_REPLICA_URLS=" postgres://shop:pw@replica-a.invalid:5433/shop , postgres://shop@replica-b.invalid/shop,",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        aliases, databases, routers, unconnected = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(aliases, ["replica1", "replica2"])
        self.assertEqual(
            databases["replica1"], ["replica-a.invalid", 5433, "shop", {"connect_timeout": 2}, "default", True]
        )
        self.assertEqual(databases["replica2"][0], "replica-b.invalid")
        self.assertEqual(routers, ["config.replicas.ReplicaRouter"])
        self.assertTrue(all(unconnected))

    def test_a_url_that_is_not_postgres_is_refused_naming_the_entry(self):
        for bad in ("mysql://shop@db/shop", "postgres://db-without-a-name", "not a url"):
            with (
                self.subTest(bad=bad),
                self.assertRaisesMessage(ValueError, "DATABASE_REPLICA_URLS entry 2 must be a postgres:// URL"),
            ):
                replica_databases(["postgres://shop@db/shop", bad], connect_timeout=2)
        result = python(
            "import django; django.setup()",
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL="postgres://shop@primary.invalid/shop",
            DATABASE_REPLICA_URLS="mysql://shop@db/shop",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImproperlyConfigured: DATABASE_REPLICA_URLS entry 1 must be a postgres:// URL", result.stderr)

    def test_lag_and_interval_settings_must_be_non_negative_numbers(self):
        with mock.patch.dict(os.environ, {"DATABASE_REPLICA_MAX_LAG_SECONDS": "2.5"}):
            self.assertEqual(env_float("DATABASE_REPLICA_MAX_LAG_SECONDS", 5.0), 2.5)
        for bad, message in (
            ("soon", "must be a number of seconds"),
            ("-1", "must be at least 0"),
            ("nan", "must be at least 0"),
        ):
            with self.subTest(bad=bad), mock.patch.dict(os.environ, {"DATABASE_REPLICA_MAX_LAG_SECONDS": bad}):
                with self.assertRaisesMessage(ImproperlyConfigured, message):
                    env_float("DATABASE_REPLICA_MAX_LAG_SECONDS", 5.0)

    def test_check_services_reports_replicas_and_refuses_a_bad_url(self):
        env = {"DATABASE_URL": os.environ["DATABASE_URL"], "CELERY_BROKER_URL": app.conf.broker_url}
        code = "import sys; from devtools.demo import main; sys.argv = ['demo', '--check-services']; sys.exit(main())"
        result = python(code, **env, DATABASE_REPLICA_URLS="postgresql://postgres@/shop?host=/nonexistent-replica")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Read replica replica1 (/nonexistent-replica/shop): not reachable", result.stdout)
        result = python(code, **env, DATABASE_REPLICA_URLS="replica.example.com")
        self.assertEqual(result.returncode, 1)
        self.assertIn("DATABASE_REPLICA_URLS entry 1 must be a postgres:// URL", result.stderr)


@override_settings(DATABASE_REPLICAS=["replica_x"])
class RouterTests(SimpleTestCase):
    def test_only_catalogue_reads_inside_a_read_view_go_to_the_replica(self):
        self.assertEqual(router.db_for_read(Product), "default")  # outside a replica_reads view

        def view(request):
            return [
                router.db_for_read(Product),
                router.db_for_read(ImageEmbedding),
                router.db_for_read(User),
                router.db_for_write(Product),
                router.db_for_read(Product, instance=Product(pk=1)),
            ]

        self.assertEqual(
            _call_on("replica_x", view, None, (), {}), ["replica_x", "replica_x", "default", "default", "replica_x"]
        )
        loaded_there = Product(pk=1)
        loaded_there._state.db = "replica_x"
        self.assertEqual(router.db_for_read(Product, instance=loaded_there), "default")  # not its database: the primary
        self.assertFalse(router.allow_migrate("replica_x", "catalog"))
        self.assertTrue(router.allow_migrate("default", "catalog"))
        loaded_here = Product(pk=2)
        loaded_here._state.db = "default"
        self.assertTrue(router.allow_relation(loaded_there, loaded_here))  # the same rows


class PrimaryAsItsOwnReplicaTests(TransactionTestCase):
    """DATABASE_REPLICA_URLS naming the primary itself (a second connection to it) is accepted."""

    alias = "replica_self"

    @classmethod
    def setUpClass(cls):
        from django.db import connections

        cls.databases = {"default", cls.alias}  # here, not on the class: the runner's checks would look for it
        database_alias_add(cls.alias, {**connections["default"].settings_dict, "TEST": {"MIRROR": "default"}})
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        database_alias_remove(cls.alias)
        replica_health_forget()

    def test_the_primary_itself_is_usable_with_no_lag(self):
        replica_health_forget()
        with override_settings(DATABASE_REPLICAS=[self.alias]):
            health = replica_health()[self.alias]
            self.assertEqual((health.usable, health.lag_seconds, health.reason), (True, 0.0, ""))
            self.assertEqual(self.client.get(reverse("catalog:product_list")).status_code, 200)
