"""Read replicas: what routing costs, and how soon a replica serves an activation.

On its own small database (var/bench-replicas-pgdata: N products with random 64-d vectors under two
model versions, each with its HNSW index) and a real streaming standby of it on the same machine
(config/tests/streaming_replica.py), measures:

- one health check of the replicas (`config.replicas.replica_health(refresh=True)`: a query on the
  primary, one on the replica, the serving-state query on each);
- `GET /api/products/<id>/similar` through Django's test client with the primary alone and with the
  replica (health cached for DATABASE_REPLICA_CHECK_SECONDS, 1 s), and how many queries each request
  sent to the primary;
- catch-up: from an activation's commit on the primary until the replica is usable again.

Replica and primary share the machine's cores here, so this measures overhead, not capacity.

    python bench/replicas.py [--products 2000] [--requests 300] [--switches 20]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LOOKALIKE_PGDATA", str(ROOT / "var" / "bench-replicas-pgdata"))
os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-replicas-media"))
os.environ.setdefault("MODELS_ROOT", str(ROOT / "var" / "bench-replicas-models"))

from bench.common import LoadSampler, configure, percentiles_ms, table, write_report  # noqa: E402

ALIAS = "replica1"


def catalogue(n: int, dim: int = 64):
    import numpy as np

    from ml.models import ModelVersion
    from search.serving.activation import model_version_activate
    from search.serving.hnsw import hnsw_index_build
    from search.models import ServingState
    from search.tests.factories import category_create, model_version_create

    versions = list(ModelVersion.objects.filter(architecture="classifier", dim=dim).order_by("id")[:2])
    if len(versions) == 2 and versions[0].embeddings.count() == n:
        return versions, list(versions[0].embeddings.values_list("product_id", flat=True))
    from catalog.models import Product

    Product.objects.all().delete()
    ModelVersion.objects.all().delete()
    rng = np.random.default_rng(0)
    categories = [category_create(f"Bench {i}") for i in range(10)]
    versions = [model_version_create(dim=dim), model_version_create(dim=dim)]
    from search.tests.factories import products_bulk

    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    products = products_bulk(model_version=versions[0], vectors=vectors.tolist(), categories=categories)
    from search.models import ImageEmbedding

    rows = list(ImageEmbedding.objects.filter(model_version=versions[0]))
    other = rng.normal(size=(n, dim)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(
            image_id=r.image_id,
            model_version=versions[1],
            product_id=r.product_id,
            category_id=r.category_id,
            price=r.price,
            embedding=v.tolist(),
        )
        for r, v in zip(rows, other, strict=True)
    )
    for version in versions:
        hnsw_index_build(model_version=version)
    model_version_activate(model_version=versions[0])
    assert ServingState.objects.filter(is_active=True).count() == 1
    return versions, [p.pk for p in products]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--switches", type=int, default=20)
    args = parser.parse_args()
    started = time.monotonic()
    configure(quick=True)
    from django.db import connections
    from django.test import Client, override_settings
    from django.test.utils import setup_test_environment

    from config.replicas import replica_health, replica_health_forget
    from config.tests.streaming_replica import StreamingReplica, database_alias_add, database_alias_remove
    from search.serving.activation import model_version_activate

    setup_test_environment()
    versions, product_ids = catalogue(args.products)
    replica = StreamingReplica(connections["default"].settings_dict)
    replica.start()
    try:
        database_alias_add(ALIAS, replica.settings_dict())
        replica.wait_caught_up()
        client = Client()
        rng = random.Random(0)
        results = {}
        with LoadSampler() as load:
            with override_settings(DATABASE_REPLICAS=[ALIAS]):
                replica_health(refresh=True)
                checks = []
                for _ in range(200):
                    t = time.perf_counter()
                    replica_health(refresh=True)
                    checks.append(time.perf_counter() - t)
                results["health_check_ms"] = percentiles_ms(checks)

            def requests(label: str, replicas: list[str]):
                primary_queries = []
                times = []
                with override_settings(DATABASE_REPLICAS=replicas):
                    replica_health_forget()
                    for _ in range(args.requests):
                        seen = []
                        pk = rng.choice(product_ids)
                        with connections["default"].execute_wrapper(
                            lambda ex, sql, p, m, c, seen=seen: (seen.append(sql), ex(sql, p, m, c))[1]
                        ):
                            t = time.perf_counter()
                            response = client.get(f"/api/products/{pk}/similar?k=8")
                            times.append(time.perf_counter() - t)
                        assert response.status_code == 200, response.content
                        primary_queries.append(len(seen))
                results[label] = {
                    **percentiles_ms(times),
                    "primary_queries_per_request": round(sum(primary_queries) / len(primary_queries), 3),
                }

            requests("similar_primary_only", [])
            requests("similar_via_replica", [ALIAS])
            requests("similar_primary_only_again", [])

            catch_up = []
            with override_settings(DATABASE_REPLICAS=[ALIAS], DATABASE_REPLICA_MAX_LAG_SECONDS=3600):
                for i in range(args.switches):
                    model_version_activate(model_version=versions[(i + 1) % 2])
                    t = time.perf_counter()
                    while not replica_health(refresh=True)[ALIAS].usable:
                        if time.perf_counter() - t > 30:
                            raise SystemExit("the replica did not catch up within 30 s")
                    catch_up.append(time.perf_counter() - t)
                model_version_activate(model_version=versions[0])
            results["catch_up_after_activation_ms"] = percentiles_ms(catch_up)
    finally:
        database_alias_remove(ALIAS)
        replica.cleanup()
    rows = [
        {"what": "one health check (primary + replica)", **results["health_check_ms"]},
        {"what": "similar items, primary only", **results["similar_primary_only"]},
        {"what": "similar items, via the replica", **results["similar_via_replica"]},
        {"what": "similar items, primary only (again)", **results["similar_primary_only_again"]},
        {"what": "activation -> replica usable again", **results["catch_up_after_activation_ms"]},
    ]
    print(
        table(
            rows,
            [
                ("what", "", "s"),
                ("n", "n", "d"),
                ("p50", "p50 ms", ".2f"),
                ("p95", "p95 ms", ".2f"),
                ("p99", "p99 ms", ".2f"),
                ("primary_queries_per_request", "primary queries/request", ".3f"),
            ],
        )
    )
    path = write_report(
        "replicas",
        quick=False,
        argv=sys.argv[1:],
        started=started,
        load=load.summary(),
        products=args.products,
        dim=64,
        results=results,
    )
    print(f"load average {load.summary()}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
