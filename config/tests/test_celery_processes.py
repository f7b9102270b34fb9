"""How many processes an embeddings worker runs on CPUs, and how TensorFlow's threads are shared."""

import os
from types import SimpleNamespace
from unittest import TestCase, mock

from config.celery import CPU_WORKER_PROCESSES, cpu_worker_processes, tensorflow_threads_share


class WorkerProcessTests(TestCase):
    def test_a_process_per_core_up_to_the_cap(self):
        for cores, expected in ((None, 1), (1, 1), (2, 2), (3, 3), (64, CPU_WORKER_PROCESSES)):
            with mock.patch("config.celery.os.cpu_count", return_value=cores):
                self.assertEqual(cpu_worker_processes(), expected, cores)

    def test_each_prefork_process_gets_its_share_of_the_cores(self):
        cases = ((2, "prefork", 4, "2"), (4, "prefork", 2, "1"), (2, "celery.concurrency.threads:TaskPool", 4, "4"),
                 (1, "solo", 2, "2"))
        for concurrency, pool, cores, threads in cases:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
            with mock.patch.dict(os.environ, env, clear=True), mock.patch("config.celery.os.cpu_count", return_value=cores):
                tensorflow_threads_share(sender=SimpleNamespace(concurrency=concurrency, pool_cls=pool))
                self.assertEqual(os.environ["TF_NUM_INTRAOP_THREADS"], threads, (concurrency, pool, cores))
                self.assertEqual(os.environ["TF_NUM_INTEROP_THREADS"], threads)
        with mock.patch.dict(os.environ, {"TF_NUM_INTRAOP_THREADS": "3"}):  # set by hand: kept
            tensorflow_threads_share(sender=SimpleNamespace(concurrency=2, pool_cls="prefork"))
            self.assertEqual(os.environ["TF_NUM_INTRAOP_THREADS"], "3")
