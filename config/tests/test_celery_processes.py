"""How many processes an embeddings worker runs, and how TensorFlow's threads are shared. The one rule
(config.celery.embedding_worker_processes) is what `make worker`, compose and the GPU image run."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import TestCase, mock

import yaml

from config.celery import (
    CPU_WORKER_PROCESSES,
    GPU_WORKER_PROCESSES,
    cpu_worker_processes,
    embedding_worker_processes,
    tensorflow_threads_share,
)

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcessTests(TestCase):
    def test_a_process_per_core_up_to_the_cap(self):
        for cores, expected in ((None, 1), (1, 1), (2, 2), (3, 3), (64, CPU_WORKER_PROCESSES)):
            with mock.patch("config.celery.os.cpu_count", return_value=cores):
                self.assertEqual(cpu_worker_processes(), expected, cores)

    def test_the_rule_for_an_embeddings_worker(self):
        with mock.patch("config.celery.os.cpu_count", return_value=3):
            self.assertEqual(embedding_worker_processes({}), 3)
            self.assertEqual(embedding_worker_processes({"WORKER_REQUIRE_GPU": "0"}), 3)
            self.assertEqual(embedding_worker_processes({"WORKER_REQUIRE_GPU": "1"}), GPU_WORKER_PROCESSES)
            self.assertEqual(embedding_worker_processes({"WORKER_REQUIRE_GPU": "yes"}), GPU_WORKER_PROCESSES)
            self.assertEqual(
                embedding_worker_processes({"WORKER_REQUIRE_GPU": "1", "EMBEDDING_WORKER_PROCESSES": "6"}), 6
            )
            self.assertEqual(
                embedding_worker_processes({"EMBEDDING_WORKER_PROCESSES": " "}), 3
            )  # compose's empty default
        for bad in ("0", "-2", "two", "1.5"):
            with (
                self.subTest(bad=bad),
                self.assertRaisesRegex(ValueError, "EMBEDDING_WORKER_PROCESSES must be a whole number"),
            ):
                embedding_worker_processes({"EMBEDDING_WORKER_PROCESSES": bad})

    def test_each_prefork_process_gets_its_share_of_the_cores(self):
        cases = (
            (2, "prefork", 4, "2"),
            (4, "prefork", 2, "1"),
            (2, "celery.concurrency.threads:TaskPool", 4, "4"),
            (1, "solo", 2, "2"),
        )
        for concurrency, pool, cores, threads in cases:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
            with (
                mock.patch.dict(os.environ, env, clear=True),
                mock.patch("config.celery.os.cpu_count", return_value=cores),
            ):
                tensorflow_threads_share(sender=SimpleNamespace(concurrency=concurrency, pool_cls=pool))
                self.assertEqual(os.environ["TF_NUM_INTRAOP_THREADS"], threads, (concurrency, pool, cores))
                self.assertEqual(os.environ["TF_NUM_INTEROP_THREADS"], threads)
        with mock.patch.dict(os.environ, {"TF_NUM_INTRAOP_THREADS": "3"}):  # set by hand: kept
            tensorflow_threads_share(sender=SimpleNamespace(concurrency=2, pool_cls="prefork"))
            self.assertEqual(os.environ["TF_NUM_INTRAOP_THREADS"], "3")


class WorkerCommandTests(TestCase):
    """The real Makefile target and container commands, run with a `celery` that only prints its arguments."""

    def setUp(self):
        self.bin = Path(tempfile.mkdtemp(prefix="lookalike-worker-bin-"))
        self.addCleanup(shutil.rmtree, self.bin, True)
        for name, body in (("celery", 'echo "celery $*"\n'), ("python", f'exec {sys.executable} "$@"\n')):
            (self.bin / name).write_text("#!/bin/sh\n" + body)
            (self.bin / name).chmod(0o755)

    def concurrency(self, argv: list[str], **env: str) -> list[int]:
        clean = {k: v for k, v in os.environ.items() if k not in ("WORKER_REQUIRE_GPU", "EMBEDDING_WORKER_PROCESSES")}
        result = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, "PATH": f"{self.bin}:{os.environ['PATH']}", **env},
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return [int(n) for n in re.findall(r"^celery .*-Q embeddings -c (\d+)", result.stdout, re.M)]

    def test_make_worker_runs_the_rule(self):
        venv = self.bin.parent / (self.bin.name + "-venv")
        (venv / "bin").mkdir(parents=True)
        self.addCleanup(shutil.rmtree, venv, True)
        for name in ("celery", "python"):
            (venv / "bin" / name).symlink_to(self.bin / name)
        make = ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", "worker"]
        self.assertEqual(self.concurrency(make), [cpu_worker_processes()])
        self.assertEqual(self.concurrency(make, EMBEDDING_WORKER_PROCESSES="3"), [3])

    def test_the_compose_worker_runs_the_rule(self):
        service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
        self.assertIn("EMBEDDING_WORKER_PROCESSES", service["environment"])  # the container sees the override
        argv = [part.replace("$$", "$") for part in service["command"]]  # compose's escape for a literal $
        self.assertEqual(self.concurrency(argv, WORKER_REQUIRE_GPU="1"), [GPU_WORKER_PROCESSES])
        self.assertEqual(self.concurrency(argv, WORKER_REQUIRE_GPU="0"), [cpu_worker_processes()])
        self.assertEqual(self.concurrency(argv, WORKER_REQUIRE_GPU="1", EMBEDDING_WORKER_PROCESSES="2"), [2])

    def test_the_gpu_image_runs_the_rule(self):
        dockerfile = (ROOT / "Dockerfile").read_text()
        gpu_stage = dockerfile.split("AS gpu", 1)[1].split("\nFROM ", 1)[0]
        argv = json.loads(re.search(r"^CMD (\[.*\])$", gpu_stage, re.M).group(1))
        self.assertIn("WORKER_REQUIRE_GPU=1", gpu_stage)
        self.assertEqual(self.concurrency(argv, WORKER_REQUIRE_GPU="1"), [GPU_WORKER_PROCESSES])
