import io
import shutil
import tempfile
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import TestCase
from PIL import Image

from catalog import fashion_mnist
from catalog.models import Category, Product, ProductImage
from catalog.tests.factories import shape_png


class FashionMnistImportTests(TestCase):
    def load(self, **options):
        out = io.StringIO()
        call_command("load_fashion_mnist", stdout=out, stderr=io.StringIO(), verbosity=0, **options)
        return out.getvalue()

    def test_subset_import_creates_one_product_per_image_in_its_class(self):
        self.load(limit=25)
        images, labels = fashion_mnist.load_split("train")
        self.assertEqual(Product.objects.count(), 25)
        self.assertEqual(Category.objects.count(), 10)
        for index in (0, 7, 24):
            product = Product.objects.get(sku=f"FM-train-{index:05d}")
            self.assertEqual(product.category.name, fashion_mnist.CLASS_NAMES[labels[index]])
            image = product.images.get()
            with Image.open(image.image.path) as stored:
                self.assertEqual((stored.format, stored.size), ("PNG", (28, 28)))
                self.assertEqual(list(stored.getdata()), images[index].flatten().tolist())

    def test_running_it_again_imports_nothing_twice(self):
        self.load(limit=10)
        output = self.load(limit=15)
        self.assertIn("Imported 5 products (10 already there)", output)
        self.assertEqual(Product.objects.count(), 15)
        self.assertEqual(ProductImage.objects.count(), 15)

    def test_new_images_are_queued_for_the_active_model(self):
        from search.models import IndexJob
        from search.tests.factories import model_version_create

        active = model_version_create(active=True)
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            output = self.load(limit=5)
        job = IndexJob.objects.get(model_version=active)
        self.assertEqual(job.total, 5)
        self.assertIn(f"Indexing 5 new images for model version {active.pk}", output)
        self.assertEqual(len(callbacks), 1, "the batches are enqueued after commit")

    def test_test_split_gets_its_own_skus(self):
        self.load(limit=3, split="test")
        self.assertEqual(
            sorted(Product.objects.values_list("sku", flat=True)), ["FM-test-00000", "FM-test-00001", "FM-test-00002"]
        )

    def test_missing_dataset_names_both_ways_to_get_it(self):
        empty = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, empty)
        with self.assertRaises(CommandError) as caught:
            self.load(limit=3, dir=empty)
        self.assertIn("apt-get install dataset-fashion-mnist", str(caught.exception))
        self.assertIn("FASHION_MNIST_DIR", str(caught.exception))
        self.assertEqual(Product.objects.count(), 0)

    def test_bad_limit_is_refused(self):
        with self.assertRaisesMessage(CommandError, "--limit must be a positive number"):
            self.load(limit=0)


class CsvImportTests(TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        (self.dir / "red.png").write_bytes(shape_png("square", color=(255, 0, 0)))
        (self.dir / "blue.png").write_bytes(shape_png("circle", color=(0, 0, 255)))
        (self.dir / "green.jpg").write_bytes(shape_png("triangle", color=(0, 255, 0), fmt="JPEG"))
        (self.dir / "broken.png").write_bytes(shape_png()[:40])
        (self.dir / "notes.png").write_text("not an image")

    def run_import(self, rows: str):
        csv_path = self.dir / "products.csv"
        csv_path.write_text("sku,title,category,price,description,images\n" + rows)
        out, err = io.StringIO(), io.StringIO()
        call_command("import_catalog", str(csv_path), images=str(self.dir), stdout=out, stderr=err, verbosity=0)
        return out.getvalue(), err.getvalue()

    def test_good_rows_import_and_bad_rows_are_reported_by_line_and_reason(self):
        out, err = self.run_import(
            "A1,Red top,Tops,19.99,Soft,red.png\n"
            ",No sku,Tops,1,,red.png\n"
            "A3,Ghost,Tops,1,,missing.png\n"
            "A4,Broken,Tops,1,,broken.png\n"
            "A5,Text,Tops,1,,notes.png\n"
            "A6,Pricey,Tops,lots,,red.png\n"
            "A7,Negative,Tops,-3,,red.png\n"
            "A8,Escape,Tops,1,,../etc/passwd\n"
            "A9,Two views,Shoes,49,,blue.png|green.jpg\n"
        )
        self.assertEqual(sorted(Product.objects.values_list("sku", flat=True)), ["A1", "A9"])
        expected = {
            3: "missing sku",
            4: "unknown image path 'missing.png'",
            5: "unreadable image 'broken.png'",
            6: "unreadable image 'notes.png'",
            7: "bad price 'lots'",
            8: "bad price '-3'",
            9: "leaves the images folder",
        }
        for line, reason in expected.items():
            self.assertRegex(err, rf"line {line}\b.*{reason}".replace("(", r"\(").replace(")", r"\)"))
        self.assertIn("2 created, 0 updated, 0 unchanged, 7 rejected.", out)
        self.assertEqual(ProductImage.objects.count(), 3)

    def test_a_product_keeps_several_images_in_order(self):
        self.run_import("B1,Two views,Shoes,49,,blue.png|green.jpg|red.png\n")
        images = list(Product.objects.get(sku="B1").images.order_by("position"))
        self.assertEqual([i.position for i in images], [0, 1, 2])
        self.assertTrue(images[1].image.name.endswith(".jpg"))
        self.assertTrue(all(len(i.sha256) == 64 for i in images))

    def test_reimport_updates_by_sku(self):
        self.run_import("C1,Old title,Tops,10,,red.png\n")
        first_image = ProductImage.objects.get().image.name
        out, _ = self.run_import("C1,New title,Dresses,12.50,New text,red.png\n")
        product = Product.objects.get(sku="C1")
        self.assertEqual((product.title, product.category.name, str(product.price)), ("New title", "Dresses", "12.50"))
        self.assertEqual(ProductImage.objects.get().image.name, first_image, "same image bytes are kept, not rewritten")
        self.assertIn("0 created, 1 updated", out)
        out, _ = self.run_import("C1,New title,Dresses,12.50,New text,blue.png\n")
        self.assertEqual(ProductImage.objects.count(), 1)
        self.assertNotEqual(ProductImage.objects.get().image.name, first_image)
        out, _ = self.run_import("C1,New title,Dresses,12.50,New text,blue.png\n")
        self.assertIn("1 unchanged", out)

    def test_duplicate_images_are_reported(self):
        out, _ = self.run_import("D1,One,Tops,1,,red.png\nD2,Two,Tops,1,,red.png\n")
        self.assertIn("D2 has the same image as D1", out)

    def test_header_without_required_columns_is_refused(self):
        csv_path = self.dir / "bad.csv"
        csv_path.write_text("name,picture\nx,red.png\n")
        with self.assertRaisesMessage(CommandError, "lacks column(s): sku, title, category, images"):
            call_command("import_catalog", str(csv_path), images=str(self.dir), verbosity=0)
