import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog import fashion_mnist
from catalog.services import fashion_mnist_import


class Command(BaseCommand):
    help = "Import Fashion-MNIST images as products (one product per image). Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--split", choices=sorted(fashion_mnist.SPLIT_PREFIX), default="train")
        parser.add_argument("--limit", type=int, help="import only the first N images")
        parser.add_argument(
            "--dir", help=f"folder with the IDX files (default: {fashion_mnist.DEFAULT_DIR} or $FASHION_MNIST_DIR)"
        )

    def handle(self, *args, split, limit, dir, **options):
        if limit is not None and limit < 1:
            raise CommandError(f"--limit must be a positive number. Received: {limit}")
        try:
            total = len(fashion_mnist.load_split(split, dir)[1][:limit])
        except fashion_mnist.DatasetNotFound as exc:
            raise CommandError(str(exc)) from exc
        started = time.perf_counter()
        with tqdm(total=total, unit="img", desc=f"Fashion-MNIST {split}", disable=options["verbosity"] == 0) as bar:
            result = fashion_mnist_import(split=split, limit=limit, directory=dir, progress=bar.update)
        seconds = time.perf_counter() - started
        rate = result.created / seconds if seconds > 0 else 0.0
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.created} products ({result.skipped} already there) in {seconds:.1f} s "
                f"({rate:.0f} products/s)."
            )
        )
        for notice in result.notices:
            self.stdout.write(notice)
