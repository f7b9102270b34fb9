"""halfvec against vector storage, and similar items at a million vectors.

    python bench/search.py --storage            # the 60k catalogue (bench/setup_data.py first)
    python bench/search.py --vectors 1000000    # a million vectors fitted to the 60k ones (--storage first)

--storage, on the 60k bench catalogue and its active (vector) version V: a twin version H stores
the same vectors as halfvec (PostgreSQL rounds V's float32 to float16, as the write path does).
Both HNSW indexes are rebuilt with search.serving.hnsw.hnsw_index_build and timed; the rows' heap and
each index are measured, and so is the other design (V's float32 column with an expression index on
(embedding::halfvec(D))). Similar items (nearest_products, k=10) run over an ef_search sweep for
both, recall@10 against the exact float32 scan; P@1/P@10 on Fashion-MNIST (the 10,000 test images as
queries through V's model, relevant = same category) are computed on each version's stored vectors,
exactly and through its HNSW index. V's vectors and categories are written to
var/bench-scale-source.npz for --vectors.

--vectors N, in a database of its own (var/bench-scale-pgdata): N vectors drawn from a Gaussian
mixture fitted to V's vectors (per category, k-means components with full covariances; unit length
like the model's), loaded with COPY into search_imageembedding once as vector and once as halfvec,
each HNSW index built by hnsw_index_build with parallel workers and a sized maintenance_work_mem
(build time, peak memory of the server's processes, index size). The rows' product and image ids
refer to no catalogue rows: 1M products would only lengthen the load, and the query reads the
embeddings table alone, so the COPY runs with session_replication_role = replica (no foreign-key
triggers; the check constraints still hold) in that bench-only database. Ground truth is an exact
float32 scan in NumPy over the same N vectors; queries are stored vectors (a product page's
"similar items"), k=10, over an ef_search sweep, plus category-filtered queries (iterative scan).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, DbTimer, LoadSampler, configure, percentiles_ms, table, write_report

K = 10
SOURCE = ROOT / "var" / "bench-scale-source.npz"
SCALE_PGDATA = ROOT / "var" / "bench-scale-pgdata"
EF_SWEEP_60K = (20, 40, 100, 200)
EF_SWEEP_1M = (20, 40, 64, 100, 200, 400)
TARGETS_1M = {"db_p50_ms": 10.0, "recall_at_10": 0.95}
MAX_PRECISION_DROP = 0.002


def log(message: str) -> None:
    print(f"[vectors {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- measuring helpers ---------------------------------------------------------------------------


def similar_run(
    version_id: int,
    storage,
    queries: list[tuple[int, np.ndarray]],
    *,
    ef: int | None,
    exact: bool = False,
    category_of: dict[int, int] | None = None,
) -> tuple[dict, list[list[int]]]:
    """(db ms percentiles, product ids per query) for nearest_products k=K, each query excluding its
    own product (a product page), optionally within the query's category."""
    from django.db import connection
    from django.test import override_settings

    from search.queries.nearest import nearest_products

    found, seconds = [], []
    with override_settings(HNSW_EF_SEARCH=ef or 100):
        for i, (product_id, vector) in enumerate([queries[0], *queries]):
            category = category_of[product_id] if category_of else None
            timer = DbTimer()
            with connection.execute_wrapper(timer):
                result = nearest_products(
                    model_version_id=version_id,
                    vector=vector,
                    k=K,
                    exclude_product_id=product_id,
                    exact=exact,
                    storage=storage,
                    category_id=category,
                )
            if i == 0:
                continue  # warm-up
            seconds.append(timer.seconds)
            found.append([n.product_id for n in result])
    return percentiles_ms(seconds), found


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth) if t])), 4)


def plan_of(
    version_id: int,
    storage,
    vector: np.ndarray,
    product_id: int,
    *,
    exact: bool = False,
    category_id: int | None = None,
) -> dict:
    """EXPLAIN ANALYZE of nearest_products' main query: which scan, and the server's time."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from search.queries.nearest import nearest_products

    with CaptureQueriesContext(connection) as captured:
        nearest_products(
            model_version_id=version_id,
            vector=vector,
            k=K,
            exclude_product_id=product_id,
            exact=exact,
            storage=storage,
            category_id=category_id,
        )
    sql = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith('SELECT "SEARCH')][-1]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', '100', true)"
        )
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = [r[0] for r in cursor.fetchall()]
    node = next((line.strip() for line in plan if "Index Scan" in line or "Seq Scan" in line), plan[0].strip())
    execution = next((line for line in plan if line.startswith("Execution Time")), "")
    return {"scan": node[:160], "execution_ms": float(execution.split(":")[1].split()[0]) if execution else None}


def relation_bytes(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s)", [name])
        return int(cursor.fetchone()[0])


def heap_bytes_of_rows(version_id: int) -> int:
    """The heap the version's rows take on their own: they are copied into a scratch table (same
    columns, same row layout) and its size measured."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_rows")
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_rows AS SELECT * FROM search_imageembedding WHERE model_version_id = %s",
            [version_id],
        )
        cursor.execute("SELECT pg_relation_size('bench_rows')")
        size = int(cursor.fetchone()[0])
        cursor.execute("DROP TABLE bench_rows")
    return size


class ServerMemory:
    """Peak memory of the PostgreSQL server's processes while it is installed: the sum of their
    private (anonymous) memory and the largest shared-memory share any of them touched (a parallel
    HNSW build keeps its graph in shared memory). Sampled every 0.5 s from /proc."""

    def __init__(self, pgdata: Path):
        self.postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        self.peak_anon = 0
        self.peak_shmem = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _children(self) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.postmaster:
                    out.append(int(entry))
        return out

    @staticmethod
    def _status(pid: int) -> dict[str, int]:
        values = {}
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("RssAnon:", "RssShmem:")):
                    key, value = line.split(":")
                    values[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return values

    def _run(self) -> None:
        while not self._stop.is_set():
            statuses = [self._status(pid) for pid in [self.postmaster, *self._children()]]
            self.peak_anon = max(self.peak_anon, sum(s.get("RssAnon", 0) for s in statuses))
            self.peak_shmem = max(self.peak_shmem, max((s.get("RssShmem", 0) for s in statuses), default=0))
            self._stop.wait(0.5)

    def __enter__(self) -> "ServerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {
            "peak_private_mib": round(self.peak_anon / 2**20, 1),
            "peak_shared_mib": round(self.peak_shmem / 2**20, 1),
        }


def index_build(version, *, memory: str, workers: int | None = None, pgdata: Path | None = None) -> dict:
    """Drop and rebuild the version's HNSW index with hnsw_index_build; its time, size, the notices
    PostgreSQL sent (pgvector says when the graph outgrows maintenance_work_mem) and memory."""
    from django.db import connection
    from django.test import override_settings

    from search.serving.hnsw import hnsw_index_name
    from search.serving.hnsw import hnsw_index_build

    name = hnsw_index_name(version.pk)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        if workers is not None:
            cursor.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", [str(workers)])
        cursor.execute("SHOW max_parallel_maintenance_workers")
        parallel = int(cursor.fetchone()[0])
    raw = connection.connection
    raw.notices.clear()
    monitor = ServerMemory(pgdata) if pgdata else None
    t = time.perf_counter()
    if monitor:
        with monitor, override_settings(HNSW_BUILD_MEMORY=memory):
            hnsw_index_build(model_version=version)
    else:
        with override_settings(HNSW_BUILD_MEMORY=memory):
            hnsw_index_build(model_version=version)
    seconds = time.perf_counter() - t
    out = {
        "seconds": round(seconds, 1),
        "index_bytes": relation_bytes(name),
        "maintenance_work_mem": memory,
        "max_parallel_maintenance_workers": parallel,
        "notices": [n.strip() for n in raw.notices if "hnsw" in n.lower()][:5],
    }
    if monitor:
        out["memory"] = monitor.summary()
    return out


def mib(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


# --- 60k: vector against halfvec on the catalogue's own vectors -----------------------------------


def stored_matrix(version, storage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product ids, category ids, vectors as stored, float32) of a version, by id."""
    from search.models import ImageEmbedding
    from search.storage import vector_array

    rows = list(
        ImageEmbedding.objects.filter(model_version=version)
        .order_by("id")
        .values_list("product_id", "category_id", storage.column)
        .iterator(chunk_size=5000)
    )
    return (
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.stack([vector_array(r[2]) for r in rows]),
    )


def precision_exact(matrix: np.ndarray, categories: np.ndarray, queries: np.ndarray, labels: np.ndarray) -> dict:
    """P@1 and P@10 of exact L2 search over `matrix` (relevant: same category)."""
    norms = np.einsum("ij,ij->i", matrix, matrix)
    hits1, hits10 = [], []
    for start in range(0, len(queries), 500):
        q = queries[start : start + 500]
        d = norms[None, :] - 2.0 * (q @ matrix.T)
        top = np.argpartition(d, 10, axis=1)[:, :10]
        order = np.take_along_axis(d, top, axis=1).argsort(axis=1)
        top = np.take_along_axis(top, order, axis=1)
        same = categories[top] == labels[start : start + 500, None]
        hits1.append(same[:, 0])
        hits10.append(same.mean(axis=1))
    return {
        "p_at_1": round(float(np.concatenate(hits1).mean()), 4),
        "p_at_10": round(float(np.concatenate(hits10).mean()), 4),
    }


def precision_hnsw(
    version_id: int, storage, queries: np.ndarray, labels: np.ndarray, category_by_product: dict
) -> dict:
    """P@1 and P@10 through the version's HNSW index (nearest_products, ef_search 100)."""
    from search.queries.nearest import nearest_products

    hits1, hits10 = [], []
    for q, label in zip(queries, labels):
        found = nearest_products(model_version_id=version_id, vector=q, k=10, storage=storage)
        same = [category_by_product[n.product_id] == label for n in found]
        hits1.append(same[0])
        hits10.append(np.mean(same))
    return {"p_at_1": round(float(np.mean(hits1)), 4), "p_at_10": round(float(np.mean(hits10)), 4)}


def halfvec_twin(version):
    """A version storing `version`'s vectors as halfvec: the rows copied, cast by PostgreSQL."""
    from django.db import connection

    from ml.models import ModelVersion
    from search.serving.activation import model_version_storage_set

    twin = ModelVersion.objects.filter(hparams__halfvec_twin_of=version.pk).first()
    if twin is None:
        twin = ModelVersion.objects.create(
            architecture=version.architecture,
            hparams={**version.hparams, "halfvec_twin_of": version.pk},
            status=ModelVersion.Status.SUCCEEDED,
            dim=version.dim,
            image_size=version.image_size,
            label_names=version.label_names,
            metrics={"note": f"bench: version {version.pk}'s vectors as halfvec"},
        )
    model_version_storage_set(model_version=twin, storage="halfvec")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM search_imageembedding WHERE model_version_id = %s", [twin.pk])
        if cursor.fetchone()[0] == 0:
            # Raw SQL: one server-side copy of 60k rows, the cast being the point.
            cursor.execute(
                "INSERT INTO search_imageembedding (image_id, model_version_id, product_id, category_id, price, "
                "embedding_half, updated_at) SELECT image_id, %s, product_id, category_id, price, embedding::halfvec, now() "
                "FROM search_imageembedding WHERE model_version_id = %s",
                [twin.pk, version.pk],
            )
            cursor.execute("VACUUM ANALYZE search_imageembedding")
    return twin


def twin_remove(twin) -> None:
    """The twin has no model files: left behind, it would be the newest succeeded version, which
    bench/setup_data.py and bench/indexing.py take for the bench model."""
    from search.serving.activation import model_version_vectors_delete

    model_version_vectors_delete(model_version=twin)
    twin.delete()


def test_queries(version) -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST test images through the version's model: (vectors, category ids)."""
    from catalog.fashion_mnist import CLASS_NAMES, load_split
    from catalog.models import Category
    from ml.runtime import embedder_for

    images, labels = load_split("test")
    by_name = dict(Category.objects.values_list("name", "pk"))
    category = np.array([by_name[CLASS_NAMES[int(label)]] for label in labels], np.int64)
    embedder = embedder_for(version)
    vectors = np.asarray(embedder.embed_arrays(images), np.float32)
    return vectors, category


def storage_main(args) -> int:
    configure(quick=False)
    from django.db import connection

    from search.serving.versions import active_model_version, version_storage
    from search.storage import HALFVEC, VECTOR

    started = time.monotonic()
    version = active_model_version()
    if version is None or version_storage(model_version=version) is not VECTOR:
        print(
            "The bench catalogue needs an active version stored as vector: run bench/setup_data.py "
            "with VECTOR_STORAGE=vector.",
            file=sys.stderr,
        )
        return 1
    with LoadSampler() as load:
        twin = halfvec_twin(version)
        log(f"version {version.pk} (vector) and its halfvec twin {twin.pk}")
        dim = int(version.dim)
        builds = {}
        for v, storage in ((version, VECTOR), (twin, HALFVEC)):
            log(f"building the HNSW index of version {v.pk} ({storage})")
            builds[storage.name] = index_build(v, memory=args.build_memory)
        log("the other design: a halfvec expression index over the float32 column")
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS bench_expr_halfvec")
            t = time.perf_counter()
            cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [args.build_memory])
            cursor.execute(
                f"CREATE INDEX bench_expr_halfvec ON search_imageembedding USING hnsw "
                f"((embedding::halfvec({dim})) halfvec_l2_ops) WHERE model_version_id = {int(version.pk)}"
            )
            expr_seconds = time.perf_counter() - t
            expr_bytes = relation_bytes("bench_expr_halfvec")
            cursor.execute("DROP INDEX bench_expr_halfvec")
            cursor.execute("RESET maintenance_work_mem")
        heaps = {VECTOR.name: heap_bytes_of_rows(version.pk), HALFVEC.name: heap_bytes_of_rows(twin.pk)}
        sizes = {
            "vector": {
                "heap_bytes": heaps["vector"],
                "hnsw_bytes": builds["vector"]["index_bytes"],
                "hnsw_build_s": builds["vector"]["seconds"],
            },
            "vector column + halfvec expression index": {
                "heap_bytes": heaps["vector"],
                "hnsw_bytes": expr_bytes,
                "hnsw_build_s": round(expr_seconds, 1),
            },
            "halfvec": {
                "heap_bytes": heaps["halfvec"],
                "hnsw_bytes": builds["halfvec"]["index_bytes"],
                "hnsw_build_s": builds["halfvec"]["seconds"],
            },
        }
        for row in sizes.values():
            row["total_bytes"] = row["heap_bytes"] + row["hnsw_bytes"]

        products, categories, matrix = stored_matrix(version, VECTOR)
        _, _, half_matrix = stored_matrix(twin, HALFVEC)
        category_by_product = dict(zip(products.tolist(), categories.tolist()))
        np.savez(
            SOURCE,
            vectors=matrix,
            categories=categories,
            category_names=np.array(_category_names(categories), dtype=object),
            version=version.pk,
        )
        log(f"wrote {SOURCE} ({len(matrix)} vectors)")

        rng = np.random.default_rng(args.seed)
        picks = rng.choice(len(products), size=min(args.queries, len(products)), replace=False)
        queries = [(int(products[i]), matrix[i]) for i in picks]
        log("exact float32 scan (ground truth)")
        exact_db, truth = similar_run(version.pk, VECTOR, queries, ef=None, exact=True)
        rows = [{"storage": "vector", "mode": "exact scan", "db": exact_db, "recall_at_10": 1.0}]
        log("halfvec exact scan")
        db, found = similar_run(twin.pk, HALFVEC, queries, ef=None, exact=True)
        rows.append({"storage": "halfvec", "mode": "exact scan", "db": db, "recall_at_10": recall(found, truth)})
        for ef in EF_SWEEP_60K:
            for v, storage in ((version, VECTOR), (twin, HALFVEC)):
                log(f"{storage} ef_search={ef}")
                db, found = similar_run(v.pk, storage, queries, ef=ef)
                rows.append(
                    {
                        "storage": storage.name,
                        "mode": f"HNSW ef_search={ef}",
                        "ef_search": ef,
                        "db": db,
                        "recall_at_10": recall(found, truth),
                    }
                )
        plans = {
            storage.name: plan_of(v.pk, storage, queries[0][1], queries[0][0])
            for v, storage in ((version, VECTOR), (twin, HALFVEC))
        }

        log("Fashion-MNIST test images through the model (P@1, P@10)")
        test_vectors, test_labels = test_queries(version)
        half_queries = test_vectors.astype(np.float16).astype(np.float32)  # what the ::halfvec cast does to a query
        retrieval = {
            "vector": {"exact": precision_exact(matrix, categories, test_vectors, test_labels)},
            "halfvec": {"exact": precision_exact(half_matrix, categories, half_queries, test_labels)},
        }
        n_hnsw = min(args.retrieval_hnsw, len(test_vectors))
        for v, storage in ((version, VECTOR), (twin, HALFVEC)):
            log(f"P@k through the {storage} HNSW index ({n_hnsw} queries)")
            retrieval[storage.name]["hnsw_ef100"] = precision_hnsw(
                v.pk, storage, test_vectors[:n_hnsw], test_labels[:n_hnsw], category_by_product
            )
        retrieval["drop"] = {
            kind: {
                m: round(retrieval["vector"][kind][m] - retrieval["halfvec"][kind][m], 4) for m in ("p_at_1", "p_at_10")
            }
            for kind in ("exact", "hnsw_ef100")
        }
        retrieval["max_drop_allowed"] = MAX_PRECISION_DROP
        retrieval["met"] = all(
            d <= MAX_PRECISION_DROP for kind in ("exact", "hnsw_ef100") for d in retrieval["drop"][kind].values()
        )
        retrieval["queries_exact"] = int(len(test_vectors))
        retrieval["queries_hnsw"] = n_hnsw
        max_abs_error = float(np.abs(half_matrix - matrix).max())
        twin_remove(twin)

    print()
    print(
        table(
            [
                {
                    "design": k,
                    **{m: mib(v[m]) for m in ("heap_bytes", "hnsw_bytes", "total_bytes")},
                    "build": v["hnsw_build_s"],
                }
                for k, v in sizes.items()
            ],
            [
                ("design", f"{len(matrix)} vectors, dim {dim}", "s"),
                ("heap_bytes", "rows MiB", ".1f"),
                ("hnsw_bytes", "HNSW MiB", ".1f"),
                ("total_bytes", "total MiB", ".1f"),
                ("build", "build s", ".1f"),
            ],
        )
    )
    print()
    print(
        table(
            rows,
            [
                ("storage", "storage", "s"),
                ("mode", "similar items, k=10", "s"),
                ("db.p50", "db p50", ".2f"),
                ("db.p95", "db p95", ".2f"),
                ("db.p99", "db p99", ".2f"),
                ("recall_at_10", "recall@10 vs exact float32", ".3f"),
            ],
        )
    )
    print()
    print(
        table(
            [
                {
                    "storage": s,
                    **{f"{k}_{m}": retrieval[s][k][m] for k in ("exact", "hnsw_ef100") for m in ("p_at_1", "p_at_10")},
                }
                for s in ("vector", "halfvec")
            ],
            [
                ("storage", "Fashion-MNIST test queries", "s"),
                ("exact_p_at_1", "P@1 exact", ".4f"),
                ("exact_p_at_10", "P@10 exact", ".4f"),
                ("hnsw_ef100_p_at_1", "P@1 HNSW", ".4f"),
                ("hnsw_ef100_p_at_10", "P@10 HNSW", ".4f"),
            ],
        )
    )
    print(
        f"drop (vector - halfvec): {retrieval['drop']} (at most {MAX_PRECISION_DROP}): {'met' if retrieval['met'] else 'MISSED'}"
    )
    print(f"largest |float32 - float16| over the stored values: {max_abs_error:.2e}")
    print(f"plans: {plans}")
    path = write_report(
        "search_storage",
        script="search",
        quick=False,
        argv=sys.argv[1:],
        started=started,
        load=load.summary(),
        catalogue={"vectors": int(len(matrix)), "dim": dim, "vector_version": version.pk, "halfvec_version": twin.pk},
        sizes=sizes,
        builds=builds,
        similar=rows,
        plans=plans,
        retrieval=retrieval,
        max_abs_error=max_abs_error,
    )
    print(f"\nwall time {time.monotonic() - started:.0f} s; load {load.summary()}; wrote {path}")
    return 0


def _category_names(categories: np.ndarray) -> list[str]:
    from catalog.models import Category

    names = dict(Category.objects.values_list("id", "name"))
    return [names[int(c)] for c in categories]


# --- a million vectors ----------------------------------------------------------------------------


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 15) -> np.ndarray:
    """Cluster labels of the rows of x (Lloyd's algorithm from k random rows)."""
    centres = x[rng.choice(len(x), size=k, replace=False)].copy()
    labels = np.zeros(len(x), np.int64)
    for _ in range(iterations):
        d = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]
        labels = d.argmin(1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    return labels


def mixture_fit(
    vectors: np.ndarray, categories: np.ndarray, *, per_category: int, rng: np.random.Generator
) -> list[dict]:
    """Gaussian components (weight, mean, Cholesky factor, category) fitted to the vectors: k-means
    within each category, then each cluster's mean and full covariance."""
    components = []
    dim = vectors.shape[1]
    for category in np.unique(categories):
        x = vectors[categories == category].astype(np.float64)
        labels = kmeans(x, min(per_category, max(1, len(x) // (2 * dim))), rng)
        for j in np.unique(labels):
            members = x[labels == j]
            if len(members) < dim + 1:
                continue
            cov = np.cov(members, rowvar=False) + 1e-6 * np.eye(dim)
            components.append(
                {
                    "weight": len(members),
                    "mean": members.mean(0),
                    "chol": np.linalg.cholesky(cov),
                    "category": int(category),
                }
            )
    total = sum(c["weight"] for c in components)
    for c in components:
        c["weight"] /= total
    return components


def mixture_sample(
    components: list[dict], n: int, rng: np.random.Generator, *, unit: bool
) -> tuple[np.ndarray, np.ndarray]:
    """n vectors (float32) and their categories from the mixture."""
    picks = rng.choice(len(components), size=n, p=[c["weight"] for c in components])
    dim = components[0]["mean"].shape[0]
    out = np.empty((n, dim), np.float32)
    cats = np.empty(n, np.int64)
    for j, c in enumerate(components):
        rows = np.flatnonzero(picks == j)
        z = rng.standard_normal((len(rows), dim))
        out[rows] = (c["mean"] + z @ c["chol"].T).astype(np.float32)
        cats[rows] = c["category"]
    if unit:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, cats


def nn_distance_median(x: np.ndarray, sample: np.ndarray) -> float:
    """Median distance from each row of `sample` (rows of x) to its nearest other row of x."""
    d = (x[sample] ** 2).sum(1)[:, None] - 2 * x[sample] @ x.T + (x**2).sum(1)[None, :]
    d[np.arange(len(sample)), sample] = np.inf
    return float(np.median(np.sqrt(np.maximum(d.min(1), 0))))


def copy_rows(
    version_id: int,
    storage,
    vectors: np.ndarray,
    categories: np.ndarray,
    prices: np.ndarray,
    *,
    first_id: int,
    chunk: int = 50000,
) -> float:
    """COPY the vectors into search_imageembedding for the version (image and product ids from
    first_id on); returns seconds. Foreign keys are not checked (no catalogue rows here)."""
    from django.db import connection, transaction

    from search.fields import vector_text

    t = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        raw = cursor.cursor
        for start in range(0, len(vectors), chunk):
            buf = io.StringIO()
            for i in range(start, min(start + chunk, len(vectors))):
                buf.write(
                    f"{first_id + i}\t{version_id}\t{first_id + i}\t{categories[i]}\t{prices[i]:.2f}\t"
                    f"{vector_text(vectors[i])}\t2026-12-02 00:00:00+00\n"
                )
            buf.seek(0)
            raw.copy_expert(
                f"COPY search_imageembedding (image_id, model_version_id, product_id, category_id, price, {storage.column}, "
                "updated_at) FROM STDIN",
                buf,
            )
    return time.perf_counter() - t


def scale_versions(n: int, dim: int):
    from ml.models import ModelVersion
    from search.serving.activation import model_version_storage_set

    out = {}
    for storage in ("vector", "halfvec"):
        version = ModelVersion.objects.filter(hparams__scale_bench=storage, hparams__vectors=n).first()
        if version is None:
            version = ModelVersion.objects.create(
                architecture="classifier",
                hparams={"scale_bench": storage, "vectors": n},
                status=ModelVersion.Status.SUCCEEDED,
                dim=dim,
                metrics={"note": f"bench: {n} mixture vectors as {storage}"},
            )
        model_version_storage_set(model_version=version, storage=storage)
        out[storage] = version
    return out


def million_main(args) -> int:
    if not SOURCE.exists():
        print(
            f"{SOURCE} is missing: run python bench/search.py --storage first (it writes the 60k vectors).",
            file=sys.stderr,
        )
        return 1
    os.environ.setdefault("LOOKALIKE_PGDATA", str(SCALE_PGDATA))
    configure(quick=False)
    from django.db import connection

    from catalog.models import Category
    from search.models import ImageEmbedding
    from search.serving.hnsw import hnsw_index_exists
    from search.storage import STORAGES

    started = time.monotonic()
    n = int(args.vectors)
    rng = np.random.default_rng(args.seed)
    source = np.load(SOURCE, allow_pickle=True)
    src, src_categories, names = source["vectors"], source["categories"], source["category_names"]
    unit = bool(np.allclose(np.linalg.norm(src, axis=1), 1.0, atol=1e-3))
    with LoadSampler() as load:
        log(f"fitting a Gaussian mixture to {len(src)} vectors of dim {src.shape[1]}")
        components = mixture_fit(src, src_categories, per_category=args.components, rng=rng)
        vectors, source_category = mixture_sample(components, n, rng, unit=unit)
        check = rng.choice(min(n, len(src)), size=500, replace=False)
        realism = {
            "components": len(components),
            "unit_length": unit,
            "nn_distance_median_source": round(nn_distance_median(src, check), 4),
            "nn_distance_median_sample_same_size": round(nn_distance_median(vectors[: len(src)], check), 4),
        }
        log(f"mixture: {realism}")
        by_name = {}
        for name in names:
            by_name[str(name)], _ = Category.objects.get_or_create(
                name=str(name), defaults={"slug": str(name).lower().replace(" ", "-").replace("/", "-")}
            )
        category_id = {
            int(c): by_name[str(names[np.flatnonzero(src_categories == c)[0]])].pk for c in np.unique(src_categories)
        }
        categories = np.array([category_id[int(c)] for c in source_category], np.int64)
        prices = rng.uniform(5, 200, size=n)
        versions = scale_versions(n, src.shape[1])

        load_info, builds, heap = {}, {}, {}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_size('search_imageembedding')")
            heap_before = int(cursor.fetchone()[0])
        for offset, (name, version) in enumerate(versions.items()):
            storage = STORAGES[name]
            have = ImageEmbedding.objects.filter(model_version=version).count()
            if have != n:
                ImageEmbedding.objects.filter(model_version=version).delete()
                log(f"COPY {n} vectors as {name}")
                load_info[name] = {
                    "copy_s": round(
                        copy_rows(version.pk, storage, vectors, categories, prices, first_id=1 + offset * n), 1
                    )
                }
                with connection.cursor() as cursor:
                    t = time.perf_counter()
                    cursor.execute("VACUUM ANALYZE search_imageembedding")
                    load_info[name]["vacuum_analyze_s"] = round(time.perf_counter() - t, 1)
                    cursor.execute("SELECT pg_relation_size('search_imageembedding')")
                    heap_after = int(cursor.fetchone()[0])
                heap[name] = heap_after - heap_before
                heap_before = heap_after
            else:
                load_info[name] = {"copy_s": None, "note": "already loaded"}
                heap[name] = heap_bytes_of_rows(version.pk)
            if args.rebuild or not hnsw_index_exists(model_version=version):
                log(
                    f"building the {name} HNSW index ({n} vectors, maintenance_work_mem {args.build_memory}, "
                    f"{args.build_workers} parallel worker(s))"
                )
                builds[name] = index_build(
                    version, memory=args.build_memory, workers=args.build_workers, pgdata=SCALE_PGDATA
                )
                log(f"built in {builds[name]['seconds']} s: {builds[name]}")
            else:
                builds[name] = {
                    "seconds": None,
                    "index_bytes": relation_bytes(f"search_emb_hnsw_v{version.pk}"),
                    "note": "already built (run with --rebuild to time it)",
                }

        picks = rng.choice(n, size=min(args.queries, n), replace=False)
        first_ids = {name: 1 + offset * n for offset, name in enumerate(versions)}
        log("exact float32 neighbours in NumPy (ground truth)")
        norms = np.einsum("ij,ij->i", vectors, vectors)
        truth, truth_category = [], []
        for i in picks:
            d = norms - 2.0 * (vectors @ vectors[i])
            d[i] = np.inf
            top = np.argpartition(d, K)[:K]
            truth.append([int(j) for j in top[np.argsort(d[top])]])
            same = np.flatnonzero(categories == categories[i])
            ds = d[same]
            top = np.argpartition(ds, K)[:K]
            truth_category.append([int(same[j]) for j in top[np.argsort(ds[top])]])
        rows = []
        for name, version in versions.items():
            storage = STORAGES[name]
            base = first_ids[name]
            queries = [(base + int(i), vectors[i]) for i in picks]
            t_truth = [[base + j for j in t] for t in truth]
            for ef in EF_SWEEP_1M:
                log(f"{name} ef_search={ef}")
                db, found = similar_run(version.pk, storage, queries, ef=ef)
                rows.append(
                    {
                        "storage": name,
                        "mode": f"HNSW ef_search={ef}",
                        "ef_search": ef,
                        "db": db,
                        "recall_at_10": recall(found, t_truth),
                        "rows_returned_min": min(len(f) for f in found),
                    }
                )
            log(f"{name} filtered by category, ef_search=100")
            category_of = {base + int(i): int(categories[i]) for i in picks}
            db, found = similar_run(version.pk, storage, queries, ef=100, category_of=category_of)
            rows.append(
                {
                    "storage": name,
                    "mode": "HNSW ef_search=100, same category",
                    "ef_search": 100,
                    "db": db,
                    "recall_at_10": recall(found, [[base + j for j in t] for t in truth_category]),
                    "rows_returned_min": min(len(f) for f in found),
                    "rows_returned_mean": round(float(np.mean([len(f) for f in found])), 2),
                }
            )
            log(f"{name} exact scan ({args.exact_queries} queries)")
            db, found = similar_run(version.pk, storage, queries[: args.exact_queries], ef=None, exact=True)
            rows.append(
                {
                    "storage": name,
                    "mode": "exact scan (database)",
                    "db": db,
                    "recall_at_10": recall(found, t_truth[: args.exact_queries]),
                    "rows_returned_min": min(len(f) for f in found),
                }
            )
        plans = {}
        for name, version in versions.items():
            base = first_ids[name]
            i = int(picks[0])
            plans[name] = plan_of(version.pk, STORAGES[name], vectors[i], base + i)
            plans[f"{name}, same category"] = plan_of(
                version.pk, STORAGES[name], vectors[i], base + i, category_id=int(categories[i])
            )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size('search_imageembedding'), pg_relation_size('search_imageembedding')"
            )
            table_total, table_heap = cursor.fetchone()

    sizes = {
        name: {
            "heap_bytes": heap[name],
            "hnsw_bytes": builds[name]["index_bytes"],
            "total_bytes": heap[name] + builds[name]["index_bytes"],
            "hnsw_build_s": builds[name]["seconds"],
        }
        for name in versions
    }
    targets = {}
    for name in versions:
        ok = [
            r
            for r in rows
            if r["storage"] == name
            and r.get("ef_search")
            and "category" not in r["mode"]
            and r["recall_at_10"] >= TARGETS_1M["recall_at_10"]
        ]
        best = min(ok, key=lambda r: r["db"]["p50"]) if ok else None
        targets[name] = {
            "lowest_p50_with_recall": {
                "ef_search": best["ef_search"] if best else None,
                "db_p50_ms": best["db"]["p50"] if best else None,
                "recall_at_10": best["recall_at_10"] if best else None,
            },
            "met": bool(best and best["db"]["p50"] <= TARGETS_1M["db_p50_ms"]),
            "category_filter_returns_k": all(
                r["rows_returned_min"] >= K for r in rows if r["storage"] == name and "category" in r["mode"]
            ),
        }
    print()
    print(
        table(
            [
                {
                    "storage": k,
                    **{m: mib(v[m]) for m in ("heap_bytes", "hnsw_bytes", "total_bytes")},
                    "build": v["hnsw_build_s"],
                }
                for k, v in sizes.items()
            ],
            [
                ("storage", f"{n} vectors, dim {src.shape[1]}", "s"),
                ("heap_bytes", "rows MiB", ".1f"),
                ("hnsw_bytes", "HNSW MiB", ".1f"),
                ("total_bytes", "total MiB", ".1f"),
                ("build", "build s", ".1f"),
            ],
        )
    )
    print({name: b.get("memory") for name, b in builds.items()})
    print()
    print(
        table(
            rows,
            [
                ("storage", "storage", "s"),
                ("mode", f"similar items, {n} vectors, k=10", "s"),
                ("db.p50", "db p50", ".2f"),
                ("db.p95", "db p95", ".2f"),
                ("db.p99", "db p99", ".2f"),
                ("recall_at_10", "recall@10", ".3f"),
                ("rows_returned_min", "min rows", "d"),
            ],
        )
    )
    for name, t in targets.items():
        print(
            f"{name}: db p50 <= {TARGETS_1M['db_p50_ms']} ms with recall@10 >= {TARGETS_1M['recall_at_10']}: "
            f"{'met' if t['met'] else 'MISSED'} {t['lowest_p50_with_recall']}; category filter returns k: {t['category_filter_returns_k']}"
        )
    print(f"plans: {plans}")
    path = write_report(
        "search_1m" if n == 1_000_000 else f"search_{n}",
        script="search",
        quick=False,
        argv=sys.argv[1:],
        started=started,
        load=load.summary(),
        vectors=n,
        dim=int(src.shape[1]),
        mixture=realism,
        load_info=load_info,
        sizes=sizes,
        builds=builds,
        table_bytes={"total": table_total, "heap": table_heap},
        similar=rows,
        plans=plans,
        targets={"db_p50_ms": TARGETS_1M["db_p50_ms"], "recall_at_10": TARGETS_1M["recall_at_10"], **targets},
        queries=len(picks),
        exact_queries=args.exact_queries,
    )
    print(f"\nwall time {time.monotonic() - started:.0f} s; load {load.summary()}; wrote {path}")
    return 0
