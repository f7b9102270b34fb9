"""Prepare the benchmark database: migrate, import Fashion-MNIST, train a small model, index it.

Each step runs only if its result is not there yet, so running this again is cheap. The database,
media and models live under var/bench-* (var/bench-quick-* with --quick), never the dev database.

    python bench/setup_data.py               # 60,000 products, classifier (cnn), 1 epoch, indexed
    python bench/setup_data.py --quick       # 5,000 products
    python bench/setup_data.py --no-index    # stop after training (bench/indexing.py then indexes
                                             # through real Celery workers)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUICK_PRODUCTS, configure  # noqa: E402


def log(message: str) -> None:
    print(f"[setup {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_model_version():
    """The newest succeeded classifier version: the one the benchmarks use."""
    from ml.models import ModelVersion

    return ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED).order_by("-id").first()


def ensure_catalogue(products: int | None) -> int:
    from django.core.management import call_command

    from catalog.models import Product

    want = products or 60000
    have = Product.objects.count()
    if have < want:
        log(f"importing Fashion-MNIST train split ({have} of {want} products there)")
        call_command("load_fashion_mnist", split="train", limit=products, verbosity=0)
    return Product.objects.count()


def ensure_model(epochs: int):
    from django.core.management import call_command

    version = bench_model_version()
    if version is None:
        log(f"training classifier (cnn), {epochs} epoch(s)")
        started = time.monotonic()
        call_command("train_model", architecture="classifier", variant="cnn", epochs=epochs)
        log(f"trained in {time.monotonic() - started:.0f} s")
        version = bench_model_version()
    return version


def ensure_indexed(version) -> None:
    """Index in this process (Celery in eager mode) when the version's vectors or index are missing."""
    from config.celery import app
    from search.indexing.progress import index_coverage
    from search.serving.hnsw import hnsw_index_exists
    from search.serving.versions import model_version_is_active
    from search.indexing.jobs import index_job_start
    from search.serving.activation import model_version_activate

    coverage = index_coverage(model_version=version)
    if not coverage.complete or not hnsw_index_exists(model_version=version):
        log(f"indexing version {version.pk} in this process ({coverage.embedded} of {coverage.total_images} embedded)")
        app.conf.task_always_eager = True
        started = time.monotonic()
        index_job_start(model_version=version, only_missing=coverage.embedded > 0)
        log(f"indexed in {time.monotonic() - started:.0f} s")
    if not model_version_is_active(model_version=version):
        model_version_activate(model_version=version)
        log(f"activated version {version.pk}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PRODUCTS} products (var/bench-quick-*)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs when a model must be trained (1)")
    parser.add_argument("--no-index", action="store_true", help="stop after training")
    args = parser.parse_args(argv)
    configure(quick=args.quick)

    from django.core.management import call_command

    log("migrating")
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    count = ensure_catalogue(QUICK_PRODUCTS if args.quick else None)
    log(f"{count} products")
    version = ensure_model(args.epochs)
    log(f"model version {version.pk}: dim {version.dim}, {version.metrics.get('holdout', {}).get('model', {})}")
    if not args.no_index:
        ensure_indexed(version)
    log("ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
