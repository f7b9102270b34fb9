"""Celery workers scale across machines: two real worker processes with their own node names, as on
two hosts (`-n a@host1`, `-n b@host2`), take batches of one reindex job from the same queue, and
each embeds some of them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import TransactionTestCase, override_settings

from config.celery import app
from search.indexing.jobs import index_job_start
from search.models import ImageEmbedding, IndexJob
from search.serving.hnsw import hnsw_index_drop

from .factories import COLORS, SHAPES, category_create, product_create, shape_png
from .processes import ROOT, child_env, wait_for
from .tiny_model import tiny_model_version

NODES = ("a@host1", "b@host2")
BATCH_DONE = re.compile(r"Task search\.tasks\.index_batch_task\[[0-9a-f-]+\] succeeded")


def _purge(queue: str) -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


class NamedWorker:
    """`celery worker -n NODE` on the embeddings queue, logging each task it finishes."""

    def __init__(self, node: str):
        self.node = node
        self.log = tempfile.NamedTemporaryFile(prefix="lookalike-scale-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "embeddings",
                "-P",
                "solo",
                "-n",
                node,
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=child_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def batches_done(self) -> int:
        return len(BATCH_DONE.findall(self.output()))

    def cleanup(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown: the task in hand finishes
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)


@override_settings(EMBEDDING_BATCH_SIZE=1)
class TwoWorkersTests(TransactionTestCase):
    def test_two_workers_on_two_hosts_share_the_batches_of_one_job(self):
        version = tiny_model_version()
        category = category_create("Shapes")
        for i in range(6):
            product_create(category=category, images=[shape_png(SHAPES[i % 4], color=COLORS[i % 4])])
        _purge("embeddings")
        self.addCleanup(_purge, "embeddings")
        workers = [NamedWorker(node) for node in NODES]
        for worker in workers:
            self.addCleanup(worker.cleanup)

        def both_answer():
            replies = app.control.ping(destination=list(NODES), timeout=1.0)
            return {node for reply in replies for node in reply} == set(NODES)

        wait_for(both_answer, timeout=90, what="both workers to answer a ping", interval=0.5)
        job = index_job_start(model_version=version)  # autocommit: the 6 batches are queued at once
        self.assertEqual(job.batches_total, 6)

        def finished():
            job.refresh_from_db()
            return job.is_finished

        try:
            wait_for(finished, timeout=120, what=f"job {job.pk} to finish")
        except AssertionError:
            raise AssertionError("\n".join(f"{w.node}:\n{w.output()[-2000:]}" for w in workers)) from None
        self.assertEqual((job.status, job.done, job.failed), (IndexJob.Status.DONE, 6, 0), job.error)
        self.assertEqual(ImageEmbedding.objects.filter(model_version=version).count(), 6)
        done = {worker.node: worker.batches_done() for worker in workers}
        self.assertEqual(sum(done.values()), 6, done)  # each batch embedded once, by one of them
        self.assertTrue(all(count >= 1 for count in done.values()), f"one worker took every batch: {done}")
        hnsw_index_drop(model_version=version)
