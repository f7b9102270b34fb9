"""The GPU images: docker-compose.yml and the Dockerfile build the workers and the trainer with
TensorFlow's CUDA stack and require the GPU, while the web image stays without it. (No Docker engine
runs the tests: these parse the files for the pieces that make a GPU worker really use its GPU.)"""

from __future__ import annotations

import re

import yaml
from django.conf import settings
from django.test import SimpleTestCase

ROOT = settings.BASE_DIR


def _stages(dockerfile: str) -> dict[str, str]:
    """{stage name: its instructions} from a multi-stage Dockerfile."""
    parts = re.split(r"^FROM\s+", dockerfile, flags=re.M)[1:]
    stages = {}
    for part in parts:
        header, _, body = part.partition("\n")
        name = re.search(r"\bAS\s+(\S+)", header, re.I)
        stages[name.group(1) if name else header.split()[0]] = header + "\n" + body
    return stages


class ComposeTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        cls.services = cls.compose["services"]

    def test_worker_and_trainer_build_the_gpu_target_require_the_gpu_and_reserve_one(self):
        for name in ("worker", "trainer"):
            with self.subTest(service=name):
                service = self.services[name]
                self.assertEqual(service["build"]["target"], "${WORKER_TARGET:-gpu}")
                self.assertEqual(service["environment"]["WORKER_REQUIRE_GPU"], "${WORKER_REQUIRE_GPU:-1}")
                devices = service["deploy"]["resources"]["reservations"]["devices"]
                self.assertEqual(devices, [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}])
                # The rest of the app's environment comes along (the merge key kept it).
                self.assertIn("DATABASE_URL", service["environment"])
                self.assertIn("celery", " ".join(service["command"]))

    def test_the_web_side_builds_the_small_image_and_asks_for_no_gpu(self):
        for name in ("web", "beat"):
            with self.subTest(service=name):
                service = self.services[name]
                self.assertEqual(service["build"]["target"], "web")
                self.assertNotIn("deploy", service)
                self.assertNotIn("WORKER_REQUIRE_GPU", service["environment"])
        self.assertNotEqual(self.services["web"]["image"], self.services["worker"]["image"])


class DockerfileTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stages = _stages((ROOT / "Dockerfile").read_text())
        cls.gpu_requirements = (ROOT / "requirements-gpu.txt").read_text()

    def test_the_gpu_stage_installs_tensorflow_with_cuda_at_the_same_version(self):
        gpu = self.stages["gpu"]
        self.assertIn("requirements-gpu.txt", gpu)
        self.assertIn("WORKER_REQUIRE_GPU=1", gpu)
        self.assertIn("-r requirements.txt", self.gpu_requirements)
        pinned = re.search(r"^tensorflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
        self.assertRegex(self.gpu_requirements, rf"(?m)^tensorflow\[and-cuda\]=={re.escape(pinned)}\s*$")

    def test_the_web_stage_is_the_default_and_has_no_cuda(self):
        self.assertEqual(list(self.stages)[-1], "web")  # `docker build .` builds it
        web = self.stages["web"]
        self.assertIn("-r requirements.txt", web)
        self.assertNotIn("requirements-gpu", web)
        self.assertNotIn("and-cuda", web)
        self.assertIn("collectstatic", web)
