"""import_catalog checks every column limit up front and reports each bad row; one bad row never stops
the rows after it; a SKU repeated within a file is reported."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

from django.core.management import call_command
from django.test import TestCase

from catalog.models import Category, Product

from .factories import shape_png


class ImportLimitTests(TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        (self.dir / "red.png").write_bytes(shape_png("square", color=(255, 0, 0)))
        (self.dir / "blue.png").write_bytes(shape_png("circle", color=(0, 0, 255)))

    def run_import(self, rows: str) -> tuple[str, str]:
        csv_path = self.dir / "products.csv"
        csv_path.write_text("sku,title,category,price,description,images\n" + rows)
        out, err = io.StringIO(), io.StringIO()
        call_command("import_catalog", str(csv_path), images=str(self.dir), stdout=out, stderr=err, verbosity=0)
        return out.getvalue(), err.getvalue()

    def test_over_long_fields_are_reported_per_row_and_the_rows_after_them_are_imported(self):
        out, err = self.run_import(
            f"L1,Long category,{'C' * 300},1,,red.png\n"
            f"L2,{'T' * 100_000},Tops,1,,red.png\n"
            f"{'S' * 65},Long sku,Tops,1,,red.png\n"
            f"L4,Fine,{'D' * 100},1,,blue.png\n"
            "L5,After them,Tops,1,,blue.png\n"
        )
        self.assertRegex(err, r"line 2 \(L1\): category is 300 characters long; at most 100 fit")
        self.assertRegex(err, r"line 3 \(L2\): title is 100,000 characters long; at most 200 fit")
        self.assertRegex(err, r"line 4 .*sku is 65 characters long; at most 64 fit")
        self.assertEqual(sorted(Product.objects.values_list("sku", flat=True)), ["L4", "L5"])
        self.assertTrue(Category.objects.filter(name="D" * 100).exists())  # exactly at the limit: fits
        self.assertIn("2 created, 0 updated, 0 unchanged, 3 rejected.", out)

    def test_a_sku_repeated_within_the_file_is_reported_and_the_first_row_kept(self):
        out, err = self.run_import("R1,First,Tops,1,,red.png\nR1,Second,Tops,2,,blue.png\n")
        self.assertIn("line 3 (R1): sku 'R1' repeats line 2 of this file", err)
        self.assertEqual(Product.objects.get(sku="R1").title, "First")
        self.assertIn("1 created, 0 updated, 0 unchanged, 1 rejected.", out)

    def test_a_nul_character_is_reported_not_a_traceback(self):
        out, err = self.run_import("N1,Nul\x00title,Tops,1,,red.png\nN2,Fine,Tops,1,,red.png\n")
        self.assertIn("line 2 (N1): title contains a NUL character", err)
        self.assertEqual(list(Product.objects.values_list("sku", flat=True)), ["N2"])
