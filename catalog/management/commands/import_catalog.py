from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.services import catalog_import_csv


class Command(BaseCommand):
    help = (
        "Import or update products from a CSV file with columns sku,title,category,price,description,images "
        "(images: paths relative to --images, separated by '|')."
    )

    def add_arguments(self, parser):
        parser.add_argument("csv_file")
        parser.add_argument("--images", required=True, help="folder the image paths are relative to")

    def handle(self, *args, csv_file, images, **options):
        csv_path, images_dir = Path(csv_file), Path(images)
        if not csv_path.is_file():
            raise CommandError(f"No such CSV file: {csv_path}")
        if not images_dir.is_dir():
            raise CommandError(f"No such images folder: {images_dir}")
        try:
            text = csv_path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CommandError(f"{csv_path} is not UTF-8 text: {exc}") from exc
        lines = text.splitlines(keepends=True)
        with tqdm(total=max(len(lines) - 1, 0), unit="row", disable=options["verbosity"] == 0) as bar:
            try:
                report = catalog_import_csv(rows=lines, images_dir=images_dir, progress=bar.update)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        for notice in report.duplicates:
            self.stdout.write(self.style.WARNING(f"Duplicate image: {notice}"))
        for error in report.errors:
            self.stderr.write(f"line {error.line}{f' ({error.sku})' if error.sku else ''}: {error.reason}")
        summary = (
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{len(report.errors)} rejected."
        )
        self.stdout.write(self.style.WARNING(summary) if report.errors else self.style.SUCCESS(summary))
