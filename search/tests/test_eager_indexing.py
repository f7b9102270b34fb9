"""Celery's eager mode (task_always_eager, as bench/setup_data.py indexes in its own process) runs the
index batches here: tasks are sent by name, and send_task alone would only queue them."""

from __future__ import annotations

from django.test import TestCase

from config.celery import app
from search.indexing.jobs import index_job_start
from search.indexing.progress import index_coverage
from search.models import IndexJob

from .factories import category_create, product_create, shape_png
from .tiny_model import tiny_model_version


class EagerIndexingTests(TestCase):
    def test_an_index_job_started_in_eager_mode_runs_to_the_end_in_this_process(self):
        version = tiny_model_version()
        category = category_create("Shapes")
        for shape in ("square", "circle", "triangle"):
            product_create(category=category, images=[shape_png(shape)])
        app.conf.task_always_eager = True
        self.addCleanup(setattr, app.conf, "task_always_eager", False)
        with self.captureOnCommitCallbacks(execute=True):
            job = index_job_start(model_version=version)
        job.refresh_from_db()
        self.assertEqual(job.status, IndexJob.Status.DONE)
        self.assertTrue(index_coverage(model_version=version).complete)
