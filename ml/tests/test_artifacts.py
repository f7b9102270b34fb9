import json
import tempfile
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase, TestCase

from ml import artifacts
from ml.artifacts import ModelLoadError
from ml.models import ModelVersion

META = {"dim": 8, "image_size": 16, "label_names": ["a", "b"], "has_classifier_head": True}


class MetaTests(SimpleTestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def write(self, meta: dict) -> None:
        (self.dir / artifacts.META).write_text(json.dumps(meta))

    def test_a_meta_file_from_before_the_schema_field_reads_as_schema_1(self):
        self.write(META)
        self.assertEqual(artifacts.meta_read(self.dir)["dim"], 8)

    def test_a_newer_schema_is_refused_with_the_reason(self):
        self.write({**META, "schema": artifacts.META_SCHEMA + 1})
        with self.assertRaisesMessage(ModelLoadError, "newer than this code reads"):
            artifacts.meta_read(self.dir)

    def test_a_missing_key_is_an_invalid_meta_file(self):
        self.write({k: v for k, v in META.items() if k != "image_size"})
        with self.assertRaisesMessage(ModelLoadError, "invalid meta.json"):
            artifacts.meta_read(self.dir)

    def test_files_that_disagree_with_the_record_are_refused(self):
        with self.assertRaisesMessage(ModelLoadError, "meta.json says dim=8 but the version's record says 16"):
            artifacts.meta_check(META, path=self.dir, dim=16, image_size=16, label_names=["a", "b"])
        with self.assertRaisesMessage(ModelLoadError, "label_names"):
            artifacts.meta_check(META, path=self.dir, dim=8, image_size=16, label_names=["b", "a"])
        # Facts the record does not know yet are not compared.
        artifacts.meta_check(META, path=self.dir, dim=None, image_size=None, label_names=[])


class FolderTests(TestCase):
    def test_each_version_has_its_own_folder_named_by_an_id_that_is_not_its_primary_key(self):
        one = ModelVersion.objects.create(architecture="classifier")
        two = ModelVersion.objects.create(architecture="classifier")
        self.assertNotEqual(one.artifacts_folder, two.artifacts_folder)
        self.assertNotEqual(one.workdir.name, f"version-{one.pk}")
        self.assertEqual(one.workdir, Path(settings.MODELS_ROOT) / one.artifacts_folder)

    def test_a_version_from_before_the_folder_id_keeps_its_folder(self):
        old = ModelVersion.objects.create(architecture="classifier", artifacts_folder="version-7")
        self.assertEqual(old.workdir, Path(settings.MODELS_ROOT) / "version-7")
