"""Indexing throughput: images per second, model alone vs the whole pipeline.

(a) the limit: `model.predict` on Fashion-MNIST tensors already in memory (no files, no database);
(b) the pipeline: image files -> tf.data decode -> model -> pgvector upsert, through real Celery
    worker processes (`celery -A config worker -Q embeddings`) after `index_job_start` on the
    catalogue, for a fresh copy of the bench model (as after retraining), then the HNSW build and the
    switch; the ratio b/a (target >= 0.7). A per-stage profile of a few batches says where (b) loses.

    python bench/indexing.py                      # 60k catalogue (run bench/setup_data.py first)
    python bench/indexing.py --quick              # 5k catalogue (bench/setup_data.py --quick)
    python bench/indexing.py --only-predict path/to/embedder.keras   # (a) only; no Django, no database
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LoadSampler, ROOT, subprocess_env, table, write_report  # noqa: E402

PREDICT_BATCHES = (256, 1024)


def log(message: str) -> None:
    print(f"[indexing {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- (a) the model alone -------------------------------------------------------------------------


def load_model(path: str | os.PathLike):
    """(keras model, image_size) from a .keras file or a training workdir; meta.json is optional here."""
    import keras

    import ml.architectures  # noqa: F401  (custom layers)

    path = Path(path)
    model_path = path / "embedder.keras" if path.is_dir() else path
    model = keras.models.load_model(model_path, compile=False)
    meta = model_path.with_name("meta.json")
    size = json.loads(meta.read_text())["image_size"] if meta.is_file() else int(model.inputs[0].shape[1])
    return model, int(size)


def input_tensors(n: int, image_size: int) -> np.ndarray:
    """n Fashion-MNIST train images as model input (float32 [n, s, s, 3]); random pixels without the data."""
    from ml.preprocess import Framing, arrays_to_input

    try:
        from catalog.fashion_mnist import load_split

        images = load_split("train")[0][:n]
    except FileNotFoundError:
        images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return np.asarray(arrays_to_input(images, image_size, Framing(enabled=False)), np.float32)


def measure_predict(model_path: str | os.PathLike, n: int, batches=PREDICT_BATCHES, repeats: int = 1) -> list[dict]:
    """Images/s of model.predict (and of Embedder._predict, the pipeline's call) on in-memory tensors."""
    from ml.inference import Embedder

    model, size = load_model(model_path)
    x = input_tensors(n, size)
    rows = []
    for batch in batches:
        model.predict(x[: batch * 2], batch_size=batch, verbose=0)  # trace and warm up
        best = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict(x, batch_size=batch, verbose=0)
            seconds = time.perf_counter() - t0
            best = seconds if best is None else min(best, seconds)
        rows.append(
            {
                "path": "model.predict",
                "batch": batch,
                "images": n,
                "seconds": round(best, 3),
                "images_per_s": round(n / best, 1),
            }
        )
    # The pipeline's own call (a traced model call per batch), on the same tensors.
    batch = batches[0]
    embedder = Embedder(
        model=model,
        meta={"dim": 0, "image_size": size, "label_names": [], "has_classifier_head": False},
        path=Path(model_path),
    )
    embedder._predict(x[:batch], batch)
    t0 = time.perf_counter()
    embedder._predict(x, batch)
    seconds = time.perf_counter() - t0
    rows.append(
        {
            "path": "Embedder._predict",
            "batch": batch,
            "images": n,
            "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 1),
        }
    )
    return rows


PREDICT_COLUMNS = [
    ("path", "(a) model alone", "s"),
    ("batch", "batch", "d"),
    ("images", "images", "d"),
    ("seconds", "seconds", ".2f"),
    ("images_per_s", "images/s", ".0f"),
]


def only_predict(args, argv) -> int:
    import keras
    import tensorflow as tf

    started = time.monotonic()
    with LoadSampler() as load:
        rows = measure_predict(args.only_predict, args.n or (5000 if args.quick else 20000))
    print(table(rows, PREDICT_COLUMNS))
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python bench/indexing.py", *argv]),
        "machine": _machine_light(tf),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "wall_seconds": round(time.monotonic() - started, 1),
        "load_average": {**load.summary(), "at_end": [round(x, 2) for x in os.getloadavg()]},
        "model": str(args.only_predict),
        "predict": rows,
    }
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"indexing_predict_{_device_tag(tf)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


def _device_tag(tf) -> str:
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def _machine_light(tf) -> dict:
    import platform

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    details = []
    for d in tf.config.list_physical_devices("GPU"):
        try:
            details.append(tf.config.experimental.get_device_details(d).get("device_name"))
        except Exception:  # noqa: BLE001
            pass
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": details or gpus or None}


# --- (b) the pipeline through Celery ------------------------------------------------------------


def clone_version(base):
    """A new succeeded version with the base's files: what a retrained model looks like to indexing."""
    from ml.models import ModelVersion
    from search.models import ServingState

    clone = ModelVersion.objects.create(
        architecture=base.architecture,
        hparams=base.hparams,
        epochs=base.epochs,
        epoch=base.epoch,
        status=ModelVersion.Status.SUCCEEDED,
        dim=base.dim,
        image_size=base.image_size,
        label_names=base.label_names,
        metrics={"bench_clone_of": base.pk},
    )
    ServingState.objects.create(model_version=clone, auto_activate=True)
    clone.workdir.mkdir(parents=True, exist_ok=True)
    for name in ("embedder.keras", "meta.json"):
        shutil.copy2(base.workdir / name, clone.workdir / name)
    return clone


def start_workers(
    *, quick: bool, workers: int, concurrency: int, tf_threads: int | None, pool: str = "prefork"
) -> list[subprocess.Popen]:
    from config.celery import app

    app.control.purge()
    env = subprocess_env(quick=quick)
    env["LOG_LEVEL"] = "INFO"  # each batch's stage times (search.indexing.batches), read by worker_stages()
    if tf_threads:
        # TensorFlow sizes its thread pools to every core in every process: N processes on N cores
        # oversubscribe. These variables cap each worker process's pools.
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(tf_threads)
    procs = []
    logs = ROOT / "var" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(workers):
        cmd = [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            "embeddings",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-n",
            f"bench{i}@%h",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        out = open(logs / f"celery-worker-{i}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )
    names = {f"bench{i}@" for i in range(workers)}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        replies = app.control.inspect(timeout=1.0).ping() or {}
        # Up, and every pool process has imported TensorFlow (ml.workers, at process start): a
        # reindex in production finds its workers running, not starting.
        warm = all(
            (logs / f"celery-worker-{i}.log").read_text(errors="replace").count("TensorFlow ready in")
            >= (concurrency if pool == "prefork" else 1)
            for i in range(workers)
        )
        if warm and all(any(r.startswith(n) for r in replies) for n in names):
            return procs
        if any(p.poll() is not None for p in procs):
            break
    stop_workers(procs)
    raise RuntimeError("Celery workers did not start; see var/bench-logs/celery-worker-*.log")


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_pipeline(
    version,
    *,
    quick: bool,
    workers: int,
    concurrency: int,
    tf_threads: int | None,
    timeout: float,
    pool: str = "prefork",
) -> dict:
    from django.conf import settings
    from django.db import connection

    from search.models import ImageEmbedding, IndexBatch, IndexJob
    from search.serving.hnsw import hnsw_index_name
    from search.serving.versions import model_version_is_active
    from search.indexing.jobs import index_job_start

    procs = start_workers(quick=quick, workers=workers, concurrency=concurrency, tf_threads=tf_threads, pool=pool)
    log(f"{workers} worker(s) x {concurrency} process(es) ready")
    try:
        t0 = time.monotonic()
        job = index_job_start(model_version=version)
        t_start = job.created_at
        log(f"job {job.pk}: {job.total} images in {job.batches_total} batches of {settings.EMBEDDING_BATCH_SIZE}")
        t_embedded = None
        last_print = 0.0
        while True:
            job.refresh_from_db()
            now = time.monotonic()
            if t_embedded is None and job.batches_done >= job.batches_total:
                t_embedded = now - t0
                log(f"all batches done in {t_embedded:.1f} s; building HNSW")
            if job.is_finished:
                break
            if now - t0 > timeout:
                raise RuntimeError(f"job {job.pk} not finished after {timeout} s: {job.status} {job.done}/{job.total}")
            if now - last_print > 15:
                log(f"{job.status}: {job.done}/{job.total} embedded ({job.done / (now - t0):.0f}/s)")
                last_print = now
            time.sleep(0.25)
        t_total = time.monotonic() - t0
    finally:
        stop_workers(procs)
    if job.status != IndexJob.Status.DONE:
        raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error}")
    finished = sorted(IndexBatch.objects.filter(job=job).values_list("finished_at", "embedded"))
    first_at, last_at = finished[0][0], finished[-1][0]
    # Steady state: from the first finished batch (model loaded in a worker) to the last.
    steady = sum(e for _, e in finished[1:]) / max(1e-9, (last_at - first_at).total_seconds())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s)", [hnsw_index_name(version.pk)])
        index_bytes = cursor.fetchone()[0]
        cursor.execute("SHOW maintenance_work_mem")
        mwm = cursor.fetchone()[0]
        cursor.execute("SHOW max_parallel_maintenance_workers")
        mpmw = cursor.fetchone()[0]
    version.refresh_from_db()
    return {
        "job": job.pk,
        "model_version": version.pk,
        "images": job.done,
        "failed": job.failed,
        "batch_size": settings.EMBEDDING_BATCH_SIZE,
        "workers": workers,
        "concurrency": concurrency,
        "pool": pool,
        "tf_threads_per_process": tf_threads or "config.celery default: cpu_count // concurrency",
        "embed_seconds": round(t_embedded, 2),
        "images_per_s": round(job.done / t_embedded, 1),
        "steady_images_per_s": round(steady, 1),
        "first_batch_seconds": round((first_at - t_start).total_seconds(), 2),
        "hnsw_build_seconds": round((job.finished_at - last_at).total_seconds(), 2),
        "total_seconds": round(t_total, 2),
        "hnsw_index_bytes": index_bytes,
        "vectors": ImageEmbedding.objects.filter(model_version=version).count(),
        "activated": model_version_is_active(model_version=version),
        "postgres": {"maintenance_work_mem": mwm, "max_parallel_maintenance_workers": mpmw},
        "stages": worker_stages(
            job.pk, [ROOT / "var" / "bench-logs" / f"celery-worker-{i}.log" for i in range(workers)]
        ),
    }


def profile_batches(version, batches: int = 8) -> dict:
    """Milliseconds per stage for a few batches, in this process, written to a fresh version and
    rolled back: where the pipeline's time goes, each stage alone and then as the task runs them."""
    from django.conf import settings
    from django.db import transaction

    from catalog.models import ProductImage
    from ml.models import ModelVersion
    from ml.preprocess import file_to_input, png_as_is
    from ml.runtime import embedder_for
    from search.indexing.embedding import images_embed
    from search.indexing.writes import embeddings_write, images_lock
    from search.indexing.vector_copy import copy_binary

    size = settings.EMBEDDING_BATCH_SIZE
    ids = list(ProductImage.objects.order_by("id").values_list("id", flat=True)[: size * (batches + 1)])
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    embedder = embedder_for(version)
    keys = ("rows", "decode", "model", "read", "graph_decode_model", "embed_files", "encode", "lock", "write")
    stages = dict.fromkeys(keys, 0.0)
    images_done = 0

    class Rollback(Exception):
        pass

    for n, chunk in enumerate(chunks):
        t = {}
        t0 = time.perf_counter()
        images = list(ProductImage.objects.filter(pk__in=chunk).only("id", "image", "width", "height").order_by("id"))
        paths = [im.image.path for im in images]
        t["rows"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        x = np.stack([file_to_input(p, embedder.image_size, embedder.framing) for p in paths])  # one thread
        t["decode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        embedder._predict(x, size)
        t["model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        files = []
        for p in paths:
            with open(p, "rb") as f:
                files.append(f.read())
        t["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if all(png_as_is(data, embedder.image_size, embedder.framing) for data in files):
            embedder._predict_png(files, size)  # PNGs that are their own model input, decoded in the graph
        t["graph_decode_model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        vectors, failures = images_embed(model_version=version, images=images)  # as the task does
        t["embed_files"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        copy_binary(sorted(vectors), np.stack([vectors[i] for i in sorted(vectors)]))
        t["encode"] = time.perf_counter() - t0
        try:
            with transaction.atomic():
                # A fresh version, as in a reindex: its rows are new inserts and no HNSW index exists
                # for it yet (writing the active version's rows would update its HNSW index too).
                fresh = ModelVersion.objects.create(
                    architecture=version.architecture,
                    status=version.status,
                    dim=version.dim,
                    image_size=version.image_size,
                )
                t0 = time.perf_counter()
                images_lock(image_ids=chunk)
                t["lock"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                embeddings_write(model_version=fresh, vectors=vectors, failures=failures)
                t["write"] = time.perf_counter() - t0
                raise Rollback
        except Rollback:
            pass
        if n == 0:
            continue  # warm-up
        images_done += len(images)
        for key in keys:
            stages[key] += t[key]
    per_batch = {k: round(1000 * v / max(1, len(chunks) - 1), 1) for k, v in stages.items()}
    pipeline = stages["rows"] + stages["embed_files"] + stages["lock"] + stages["write"]
    return {
        "batches": len(chunks) - 1,
        "batch_size": size,
        "ms_per_batch": per_batch,
        "images_per_s_single_process": round(images_done / pipeline, 1) if pipeline else None,
        "note": "decode: Pillow (the whole contract), one thread, alone; model: Embedder._predict alone; "
        "read: the files' bytes; graph_decode_model: PNGs that are their own model input "
        "(ml.preprocess.png_as_is) decoded inside the model's graph, and the model (0 where the files "
        "are not such PNGs); embed_files: what the task runs (decode or graph decode, and the model); encode: the binary COPY data (inside write); lock: "
        "images and products FOR NO KEY UPDATE; write: COPY + INSERT ... SELECT ... ON CONFLICT + "
        "failure records. One process, no Celery.",
    }


WORKER_LINE = re.compile(
    r"Index batch \d+ of job (\d+): (\d+) embedded, (\d+) failed; "
    r"ms rows=([\d.]+) embed=([\d.]+) write=([\d.]+) total=([\d.]+)"
)


def worker_stages(job_id: int, logs: list[Path]) -> dict:
    """Per-stage milliseconds per batch in the real run, from the workers' one line per batch."""
    rows = []
    for path in logs:
        for match in WORKER_LINE.finditer(path.read_text(errors="replace")):
            if int(match.group(1)) == job_id:
                rows.append([float(v) for v in match.groups()[3:]])
    if not rows:
        return {"batches": 0}
    a = np.asarray(rows)
    steady = a[np.argsort(a[:, 3])[: max(1, len(a) - 4)]] if len(a) > 8 else a  # without the model loads
    names = ("rows", "embed", "write", "total")
    return {
        "batches": len(a),
        "ms_per_batch_mean": {k: round(float(v), 1) for k, v in zip(names, a.mean(axis=0))},
        "ms_per_batch_median": {k: round(float(v), 1) for k, v in zip(names, np.median(a, axis=0))},
        "ms_per_batch_mean_without_slowest_4": {k: round(float(v), 1) for k, v in zip(names, steady.mean(axis=0))},
        "note": "inside each task, in each worker process: rows = batch and image rows before the model; "
        "embed = decode + model (prefetch-overlapped); write = the batch's transaction (locks, COPY, "
        "upsert, counts). Processes run side by side, so these add up to more than the wall time.",
    }


def vectors_tidy(keep) -> int:
    """Delete the vectors of every inactive version but `keep`: the table holds one catalogue again."""
    from django.db import connection

    from ml.models import ModelVersion
    from search.serving.activation import model_version_vectors_delete

    deleted = 0
    for version in ModelVersion.objects.exclude(serving__is_active=True).exclude(pk=keep.pk):
        if version.embeddings.exists():
            deleted += model_version_vectors_delete(model_version=version)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE search_imageembedding")
    return deleted


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 5k catalogue (bench/setup_data.py --quick)")
    parser.add_argument(
        "--only-predict",
        metavar="PATH",
        help="(a) only, for this .keras file or workdir; no Django, no database (e.g. on a GPU machine)",
    )
    parser.add_argument("--n", type=int, help="images for (a) (default 20000, at most the catalogue)")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="-c per worker (default: a process per core, at most 4, as make worker and the demo "
        "run it: config.celery.cpu_worker_processes)",
    )
    parser.add_argument(
        "--pool",
        default="prefork",
        choices=("prefork", "threads", "solo"),
        help="Celery pool (prefork: a process per slot; threads: slots share one process and model)",
    )
    parser.add_argument(
        "--tf-threads",
        type=int,
        help="TF_NUM_INTRAOP/INTEROP_THREADS for each worker process (default: TensorFlow's, every core)",
    )
    parser.add_argument("--label", help="write bench/results/indexing_<label>.json (a variant's run)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job")
    parser.add_argument("--out", help="--only-predict: where to write the JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.only_predict:
        return only_predict(args, argv)
    if args.concurrency is None:
        from config.celery import cpu_worker_processes

        args.concurrency = cpu_worker_processes()

    from bench.common import configure

    configure(quick=args.quick)
    from bench.setup_data import bench_model_version
    from catalog.models import ProductImage
    from ml.models import ModelVersion

    base = ModelVersion.objects.filter(serving__is_active=True).first() or bench_model_version()
    if base is None:
        print("No trained model in the bench database: run bench/setup_data.py first.", file=sys.stderr)
        return 1
    started = time.monotonic()
    catalogue = ProductImage.objects.count()
    from django.db import connection

    # The last run's tidy deleted a catalogue of vectors: vacuumed now, not by autovacuum during (a).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM search_imageembedding")
    with LoadSampler() as load_a:
        log(f"(a) model.predict on {min(catalogue, args.n or 20000)} in-memory images")
        predict = measure_predict(base.workdir, min(catalogue, args.n or 20000))
    print(table(predict, PREDICT_COLUMNS), flush=True)
    limit = max(r["images_per_s"] for r in predict)  # the best way to run the model, in memory

    with LoadSampler() as load_p:
        log("profile: 8 batches in this process, rolled back")
        profile = profile_batches(base)
    log(f"profile ms/batch: {profile['ms_per_batch']}")

    clone = clone_version(base)
    log(f"(b) pipeline: version {clone.pk} (copy of {base.pk}) over {catalogue} images")
    with LoadSampler() as load_b:
        pipeline = run_pipeline(
            clone,
            quick=args.quick,
            workers=args.workers,
            concurrency=args.concurrency,
            tf_threads=args.tf_threads,
            timeout=args.timeout,
            pool=args.pool,
        )
    # The CPU is shared: (a) again right after (b) says how much the machine changed meanwhile.
    with LoadSampler() as load_a2:
        log("(a) again, after the pipeline")
        predict_after = measure_predict(base.workdir, min(catalogue, args.n or 20000) // 2, batches=(256,))
    limit_after = max(r["images_per_s"] for r in predict_after)
    deleted = vectors_tidy(clone)
    # The model alone at its fastest, before or after (b): the CPU is shared, and a slow moment in
    # (a) must not flatter the ratio.
    limit_before, limit = limit, max(limit, limit_after)
    ratio = pipeline["images_per_s"] / limit
    steady_ratio = pipeline["steady_images_per_s"] / limit
    rows = [
        {"what": "(a) model alone, in memory (best of before and after (b))", "images_per_s": limit, "ratio": 1.0},
        {"what": "(a) before (b), best row above", "images_per_s": limit_before, "ratio": limit_before / limit},
        {
            "what": "(b) files -> decode -> model -> pgvector (Celery)",
            "images_per_s": pipeline["images_per_s"],
            "ratio": ratio,
        },
        {
            "what": "(b) steady state (after first batch)",
            "images_per_s": pipeline["steady_images_per_s"],
            "ratio": steady_ratio,
        },
        {"what": "(a) again after (b) (machine drift)", "images_per_s": limit_after, "ratio": limit_after / limit},
        {
            "what": "profile: one process, rows+embed_files+lock+write",
            "images_per_s": profile["images_per_s_single_process"],
            "ratio": (profile["images_per_s_single_process"] or 0) / limit,
        },
    ]
    print()
    print(table(rows, [("what", "indexing", "s"), ("images_per_s", "images/s", ".0f"), ("ratio", "b/a", ".2f")]))
    print()
    stage_rows = [{"stage": f"profile (one process): {k}", "ms": v} for k, v in profile["ms_per_batch"].items()]
    for k, v in (pipeline["stages"].get("ms_per_batch_median") or {}).items():
        stage_rows.append({"stage": f"Celery run, median per batch: {k}", "ms": v})
    print(table(stage_rows, [("stage", f"per {profile['batch_size']}-image batch", "s"), ("ms", "ms", ".1f")]))
    print(
        f"\nHNSW build {pipeline['hnsw_build_seconds']} s for {pipeline['vectors']} vectors "
        f"({pipeline['hnsw_index_bytes'] / 2**20:.1f} MiB); whole job {pipeline['total_seconds']} s; "
        f"target b/a >= 0.7: {'met' if ratio >= 0.7 else 'MISSED'} ({ratio:.2f})"
    )
    path = write_report(
        "indexing" + (f"_{args.label}" if args.label else ""),
        quick=args.quick,
        argv=argv,
        started=started,
        script="indexing",
        load={
            "predict": load_a.summary(),
            "profile": load_p.summary(),
            "pipeline": load_b.summary(),
            "predict_after": load_a2.summary(),
        },
        catalogue=catalogue,
        predict=predict,
        predict_after=predict_after,
        ratio_to_predict_after=round(pipeline["images_per_s"] / limit_after, 3),
        profile=profile,
        pipeline=pipeline,
        limit_images_per_s=limit,
        limit_before_images_per_s=limit_before,
        ratio=round(ratio, 3),
        steady_ratio=round(steady_ratio, 3),
        target={"ratio": 0.7, "met": ratio >= 0.7},
        vectors_deleted_from_older_versions=deleted,
    )
    print(f"wall time {time.monotonic() - started:.0f} s; load {load_b.summary()}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
