"""Read replicas with a real streaming standby of the test server (config/tests/streaming_replica.py).

Which database served a request is read from the queries each connection ran (an execute wrapper
on the primary and on the replica), and where the two hold different rows (replay paused on the
replica), from what the page shows.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import TransactionTestCase, override_settings
from django.urls import reverse

from catalog.models import Product
from config.replicas import replica_health
from config.tests.streaming_replica import StreamingReplicaMixin
from ml.models import ModelVersion
from search.serving.activation import model_version_activate
from search.serving.hnsw import hnsw_index_build, hnsw_index_drop

from .factories import (
    category_create,
    image_bytes,
    index_and_activate,
    model_version_create,
    product_create,
    product_with_vectors,
    shape_image,
    shape_png,
)
from .tiny_model import tiny_model_version

REPLICA = StreamingReplicaMixin.replica_alias
VECTORS = ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0])
CATALOGUE_TABLES = ("catalog_product", "search_imageembedding")


@contextmanager
def queries_by_alias():
    """The SQL each database ran inside the block, without connecting to one that is down."""
    seen: dict[str, list[str]] = {"default": [], REPLICA: []}

    def recorder(alias):
        def wrapper(execute, sql, params, many, context):
            seen[alias].append(sql)
            return execute(sql, params, many, context)

        return wrapper

    with ExitStack() as stack:
        for alias in seen:
            stack.enter_context(connections[alias].execute_wrapper(recorder(alias)))
        yield seen


def touches_catalogue(queries: list[str]) -> bool:
    return any(table in sql for sql in queries for table in CATALOGUE_TABLES)


@override_settings(DATABASE_REPLICA_MAX_LAG_SECONDS=3600, DATABASE_REPLICA_CHECK_SECONDS=3600)
class ReplicaRoutingTests(StreamingReplicaMixin, TransactionTestCase):
    def setUp(self):
        super().setUp()
        self.v1 = model_version_create(dim=3)
        self.category = category_create("Shapes")
        self.products = [
            product_with_vectors(model_version=self.v1, vectors=[vector], category=self.category, title=f"Shape {i}")
            for i, vector in enumerate(VECTORS)
        ]
        hnsw_index_build(model_version=self.v1)
        model_version_activate(model_version=self.v1)
        self.replica.wait_caught_up()

    def tearDown(self):
        for version in ModelVersion.objects.all():
            hnsw_index_drop(model_version=version)
        super().tearDown()

    def get(self, path: str):
        with queries_by_alias() as seen:
            response = self.client.get(path)
        return response, seen

    def similar(self, product: Product):
        response, seen = self.get(reverse("search:api_product_similar", args=[product.pk]) + "?k=3")
        self.assertEqual(response.status_code, 200, response.content)
        return response.json(), seen

    def assertServedBy(self, seen: dict[str, list[str]], alias: str):
        other = "default" if alias == REPLICA else REPLICA
        self.assertTrue(touches_catalogue(seen[alias]), f"{alias} ran no catalogue query: {seen[alias]}")
        self.assertFalse(touches_catalogue(seen[other]), f"{other} ran catalogue queries: {seen[other]}")

    def test_catalogue_product_page_and_similar_items_read_from_the_replica(self):
        for path in (
            reverse("catalog:product_list") + "?q=shape",
            reverse("catalog:product_detail", args=[self.products[0].pk]),
            reverse("catalog:api_product_list"),
        ):
            response, seen = self.get(path)
            self.assertEqual(response.status_code, 200, path)
            self.assertServedBy(seen, REPLICA)
        body, seen = self.similar(self.products[0])
        self.assertServedBy(seen, REPLICA)
        self.assertEqual([r["id"] for r in body["results"]], [p.pk for p in self.products[1:]])
        self.assertEqual(body["model_version"], self.v1.pk)
        self.assertTrue(any("set_config('hnsw.iterative_scan'" in sql for sql in seen[REPLICA]))  # SET LOCAL went along

    def test_writes_and_reads_outside_the_read_views_use_the_primary(self):
        with queries_by_alias() as seen:
            model_version_activate(model_version=self.v1)
            Product.objects.filter(pk=self.products[0].pk).update(title="Renamed")
            self.assertEqual(Product.objects.get(pk=self.products[0].pk).title, "Renamed")
        self.assertEqual(seen[REPLICA], [])

    def test_the_health_check_runs_once_per_interval_not_per_request(self):
        path = reverse("catalog:product_detail", args=[self.products[0].pk])
        _, first = self.get(path)
        _, second = self.get(path)
        self.assertEqual(sum("pg_current_wal_lsn" in sql for sql in first["default"]), 1)
        self.assertEqual(second["default"], [])  # nothing at all on the primary: the health was cached
        self.assertServedBy(second, REPLICA)

    def test_a_replica_behind_more_than_the_limit_is_not_used(self):
        self.replica.pause()
        try:
            Product.objects.filter(pk=self.products[0].pk).update(title="Renamed on the primary")
            path = reverse("catalog:product_detail", args=[self.products[0].pk])
            response, seen = self.get(path)  # lag allowed (an hour): the replica's older row shows
            self.assertContains(response, "Shape 0")
            self.assertServedBy(seen, REPLICA)
            with override_settings(DATABASE_REPLICA_MAX_LAG_SECONDS=0):
                replica_health(refresh=True)
                response, seen = self.get(path)
                self.assertContains(response, "Renamed on the primary")
                self.assertServedBy(seen, "default")
                self.assertIn("behind the primary", replica_health()[REPLICA].reason)
        finally:
            self.replica.resume()

    def test_a_version_activated_on_the_primary_is_used_only_once_the_replica_has_it(self):
        v2 = model_version_create(dim=3)
        for product, vector in zip(self.products, reversed(VECTORS), strict=True):
            image = product.images.get()
            image.embeddings.create(
                model_version=v2, product=product, category=self.category, price=product.price, embedding=vector
            )
        hnsw_index_build(model_version=v2)
        self.replica.wait_caught_up()
        self.replica.pause()
        try:
            model_version_activate(model_version=v2)
            replica_health(refresh=True)
            self.assertFalse(replica_health()[REPLICA].usable)
            self.assertIn("not caught up", replica_health()[REPLICA].reason)
            body, seen = self.similar(self.products[3])
            self.assertEqual(body["model_version"], v2.pk)  # never the replica's v1
            self.assertEqual([r["id"] for r in body["results"]], [p.pk for p in self.products[2::-1]][:3])
            self.assertServedBy(seen, "default")
        finally:
            self.replica.resume()
        self.replica.wait_caught_up()
        replica_health(refresh=True)
        body, seen = self.similar(self.products[3])
        self.assertEqual(body["model_version"], v2.pk)
        self.assertServedBy(seen, REPLICA)

    def test_an_hnsw_index_the_replica_has_not_replayed_keeps_search_on_the_primary(self):
        v2 = model_version_create(dim=3)
        for product, vector in zip(self.products, VECTORS, strict=True):
            product.images.get().embeddings.create(
                model_version=v2, product=product, category=self.category, price=product.price, embedding=vector
            )
        model_version_activate(model_version=v2)  # serving before its index is built (allowed)
        self.replica.wait_caught_up()
        replica_health(refresh=True)
        self.assertTrue(replica_health()[REPLICA].usable)  # both serve v2 without an index
        self.replica.pause()
        try:
            hnsw_index_build(model_version=v2)
            replica_health(refresh=True)
            self.assertFalse(replica_health()[REPLICA].usable)
            _, seen = self.similar(self.products[0])
            self.assertServedBy(seen, "default")
        finally:
            self.replica.resume()
        self.replica.wait_caught_up()
        replica_health(refresh=True)
        _, seen = self.similar(self.products[0])
        self.assertServedBy(seen, REPLICA)

    def test_a_product_not_yet_on_the_replica_is_found_on_the_primary_not_a_404(self):
        self.replica.pause()
        try:
            product = product_create(category=self.category, title="Created a moment ago")
            response, seen = self.get(reverse("catalog:product_detail", args=[product.pk]))
            self.assertContains(response, "Created a moment ago")
            self.assertTrue(touches_catalogue(seen[REPLICA]) and touches_catalogue(seen["default"]))  # asked both
            response = self.client.get(reverse("catalog:product_detail", args=[product.pk + 1000]))
            self.assertEqual(response.status_code, 404)  # not there on either
        finally:
            self.replica.resume()

    def test_a_replica_that_stops_mid_request_costs_one_retry_on_the_primary(self):
        path = reverse("search:api_product_similar", args=[self.products[0].pk]) + "?k=3"
        self.similar(self.products[0])  # the replica's connection is open and its health cached
        stopped = []

        def stop_the_replica(execute, sql, params, many, context):
            if "search_imageembedding" in sql and not stopped:
                stopped.append(sql)
                self.replica.stop(mode="immediate")  # as if its machine went away
            return execute(sql, params, many, context)

        try:
            with connections[REPLICA].execute_wrapper(stop_the_replica), queries_by_alias() as seen:
                response = self.client.get(path)
            self.assertEqual(len(stopped), 1)
            self.assertEqual(response.status_code, 200, response.content)
            self.assertEqual([r["id"] for r in response.json()["results"]], [p.pk for p in self.products[1:]])
            self.assertTrue(touches_catalogue(seen["default"]))
            self.assertFalse(replica_health()[REPLICA].usable)
            with self.assertLogs("config.replicas", "WARNING"):
                replica_health(refresh=True)  # still down: reported, and the pages still work
            for page in (
                path,
                reverse("catalog:product_detail", args=[self.products[0].pk]),
                reverse("catalog:product_list"),
            ):
                response, seen = self.get(page)
                self.assertEqual(response.status_code, 200, page)
                self.assertServedBy(seen, "default")
        finally:
            self.replica.resume_server()
        self.replica.wait_caught_up()
        replica_health(refresh=True)
        _, seen = self.similar(self.products[0])
        self.assertServedBy(seen, REPLICA)  # back in use once it is up and caught up

    def test_photo_search_reads_from_the_replica(self):
        for shape in ("square", "circle", "triangle"):
            product_create(category=self.category, images=[shape_png(shape)], title=f"A {shape}")
        version = tiny_model_version()
        index_and_activate(version)
        self.replica.wait_caught_up()
        photo = image_bytes(shape_image("circle", size=32))
        with queries_by_alias() as seen:
            response = self.client.post(
                reverse("search:api_search"), {"image": SimpleUploadedFile("q.png", photo, "image/png"), "k": 2}
            )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["model_version"], version.pk)
        self.assertEqual(len(response.json()["results"]), 2)
        self.assertServedBy(seen, REPLICA)
