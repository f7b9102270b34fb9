"""The admin's live panel polls every two seconds: while a reindex job runs, its progress comes
from the job's own counters, never from counting the catalogue's tables."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from search.indexing.jobs import index_job_start
from search.models import IndexJob

from .factories import model_version_create, product_with_vectors


class LivePanelTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.version = model_version_create(dim=3)
        for vector in ([0, 0, 1], [0, 1, 0], [1, 0, 0]):
            product_with_vectors(model_version=cls.version, vectors=[vector])
        cls.admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")

    def setUp(self):
        self.client.force_login(self.admin)
        self.url = reverse("admin:ml_modelversion_status", args=[self.version.pk])
        self.client.get(self.url)  # the session and user loads settle

    def poll(self) -> tuple[dict, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            data = self.client.get(self.url).json()
        return data, [q["sql"] for q in queries.captured_queries]

    def test_a_poll_while_a_job_runs_counts_no_table(self):
        with self.captureOnCommitCallbacks(execute=False):
            job = index_job_start(model_version=self.version)
        IndexJob.objects.filter(pk=job.pk).update(done=2, failed=1)
        data, sql = self.poll()
        self.assertEqual([q for q in sql if "COUNT(" in q.upper()], [])
        self.assertLessEqual(len(sql), 5, sql)  # session, user, version, its serving state, its latest job
        self.assertEqual(
            (data["index_job"]["done"], data["index_job"]["failed"], data["index_job"]["total"]), (2, 1, 3)
        )
        self.assertEqual(data["index_job"]["fraction"], 1.0)

    def test_with_no_job_running_the_coverage_is_there(self):
        data, _ = self.poll()
        self.assertEqual(
            (data["coverage"]["total"], data["coverage"]["embedded"], data["coverage"]["complete"]), (3, 3, True)
        )
