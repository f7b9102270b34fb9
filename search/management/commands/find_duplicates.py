"""manage.py find_duplicates [--threshold D]: the admin's near-duplicates page in a shell."""

from __future__ import annotations

import math
import time

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Product
from search.queries.duplicates import (
    THRESHOLD_FRACTION,
    duplicate_pairs,
    duplicate_threshold_default,
)
from search.serving.versions import active_model_version

from ._versions import model_version_get


class Command(BaseCommand):
    help = (
        "List pairs of different products whose images are within --threshold (L2) of each other under "
        f"the active model (or --model-version). Default threshold: {THRESHOLD_FRACTION} × the median "
        "distance from an image to the nearest image of another product."
    )

    def add_arguments(self, parser):
        parser.add_argument("--threshold", type=float, default=None, metavar="D")
        parser.add_argument("--model-version", type=int, default=None, metavar="N")
        parser.add_argument(
            "--limit", type=int, default=100, help="Print the closest N pairs (default 100; 0 for all)."
        )

    def handle(self, *args, threshold: float | None, model_version: int | None, limit: int, **options):
        if model_version is not None:
            version = model_version_get(model_version)
        else:
            version = active_model_version()
            if version is None:
                raise CommandError("No model version is active: name one with --model-version N.")
        if threshold is not None and (not math.isfinite(threshold) or threshold < 0):
            raise CommandError(f"The threshold must be a distance of 0 or more. Received: {threshold}")
        started = time.monotonic()
        if threshold is None:
            threshold = duplicate_threshold_default(model_version=version)
            if threshold is None:
                raise CommandError(
                    f"Model version #{version.pk} has vectors for fewer than two products: nothing to compare."
                )
            self.stderr.write(
                f"Threshold {threshold:.4f} ({THRESHOLD_FRACTION} × the median nearest-other-product distance)."
            )
        from tqdm import tqdm

        with tqdm(unit="image", desc="images", file=self.stderr._out, dynamic_ncols=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            pairs = duplicate_pairs(model_version=version, threshold=threshold, progress=progress)
        elapsed = time.monotonic() - started
        shown = pairs if limit == 0 else pairs[:limit]
        products = Product.objects.in_bulk({p.product_a for p in shown} | {p.product_b for p in shown})
        for pair in shown:
            a, b = products.get(pair.product_a), products.get(pair.product_b)
            if a is None or b is None:
                continue
            self.stdout.write(f"{pair.distance:.4f}  #{a.pk} {a.sku} “{a.title}”  ~  #{b.pk} {b.sku} “{b.title}”")
        self.stderr.write(
            f"{len(pairs):,} pairs within {threshold:.4f} under model version #{version.pk} ({elapsed:.1f} s)."
        )
