"""Healing what a lost message leaves behind (Celery beat runs this through
search.tasks.lifecycle_repair_task every REPAIR_INTERVAL seconds; see CELERY_BEAT_SCHEDULE).

A message can be lost without anything failing: Redis flushed, or restarted without persistence,
or a finish message published while the broker was down. Every task is idempotent, so sending one
again when in doubt is safe; what this module decides is when the doubt is real:

- a job whose batches are all done but which still runs: its finish message was lost;
- a job building its index with no build in progress (the build lock is free): the build was lost;
- a running job with unfinished batches, no batch finished for REPAIR_STALE_AFTER seconds and
  nothing waiting in the `embeddings` queue: its batches were lost;
- a queued or running model version that no process trains (its claim is free, ml.claims), older
  than REPAIR_STALE_AFTER, with nothing waiting in the `training` queue: its message was lost;
- a serving version (the active one, or one to auto-activate that was never indexed) with images
  older than REPAIR_STALE_AFTER that have neither a vector nor a failure: an only-missing reindex.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max, Q
from django.utils import timezone

from catalog.models import ProductImage
from config.celery import app
from ml import tasks as ml_tasks
from ml.claims import model_version_claimed
from ml.models import ModelVersion

from ..models import IndexBatch, IndexJob
from ..serving.hnsw import hnsw_build_in_progress
from . import enqueue
from .jobs import index_job_start

logger = logging.getLogger(__name__)

REPAIR_LOCK = 0x4C4B_0003  # pg_try_advisory_lock: one repair at a time


@dataclass
class RepairReport:
    jobs_finished: list[int] = field(default_factory=list)  # finish messages sent again
    batches_requeued: list[int] = field(default_factory=list)
    versions_requeued: list[int] = field(default_factory=list)  # training messages sent again
    jobs_started: list[int] = field(default_factory=list)  # only-missing reindexes
    skipped: bool = False  # another repair was running

    def lines(self) -> list[str]:
        out = []
        if self.jobs_finished:
            out.append(f"Finishing reindex job(s) {', '.join(map(str, self.jobs_finished))}.")
        if self.batches_requeued:
            out.append(f"Queued {len(self.batches_requeued)} lost indexing batch(es) again.")
        out += [f"Resuming the training of model version {pk}." for pk in self.versions_requeued]
        if self.jobs_started:
            out.append(f"Indexing missing images in job(s) {', '.join(map(str, self.jobs_started))}.")
        return out


def queue_length(name: str) -> int | None:
    """Messages waiting in a broker queue, or None when the broker cannot say (or is down)."""
    try:
        with app.connection_for_write() as conn:
            return conn.default_channel.queue_declare(name, passive=False, durable=True).message_count
    except Exception:  # noqa: BLE001 - a broker that cannot answer is treated as "unknown"
        logger.warning("Could not read the length of queue %r", name, exc_info=True)
        return None


def lifecycle_repair(*, stale_after: float | None = None) -> RepairReport:
    """Send again what the train → index → activate lifecycle lost; returns what was done.

    `stale_after` (seconds, default settings.REPAIR_STALE_AFTER) is how long work may show no
    progress before it counts as lost; 0 when nothing can be running (make run's fresh workers).
    """
    stale_after = settings.REPAIR_STALE_AFTER if stale_after is None else stale_after
    report = RepairReport()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [REPAIR_LOCK])
        if not cursor.fetchone()[0]:
            report.skipped = True
            return report
    try:
        cutoff = timezone.now() - timedelta(seconds=stale_after)
        _jobs_repair(report, cutoff)
        _training_repair(report, cutoff)
        _missing_images_index(report, cutoff)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REPAIR_LOCK])
    for line in report.lines():
        logger.warning("Lifecycle repair: %s", line)
    return report


def _jobs_repair(report: RepairReport, cutoff) -> None:
    waiting = None  # the embeddings queue's length, read once when needed
    jobs = IndexJob.objects.filter(status__in=[IndexJob.Status.RUNNING, IndexJob.Status.BUILDING_INDEX]).annotate(
        last_finished=Max("batches__finished_at")
    )
    for job in jobs:
        if job.status == IndexJob.Status.BUILDING_INDEX:
            if not hnsw_build_in_progress(model_version_id=job.model_version_id):
                enqueue.job_finish(job.pk)
                report.jobs_finished.append(job.pk)
            continue
        if job.batches_done >= job.batches_total:
            enqueue.job_finish(job.pk)
            report.jobs_finished.append(job.pk)
            continue
        last_activity = max(filter(None, [job.created_at, job.last_finished]))
        if last_activity > cutoff:
            continue
        if waiting is None:
            waiting = queue_length("embeddings")
        if waiting:  # messages still wait (maybe this job's); None: the broker cannot say, go by time
            continue
        for batch_id in IndexBatch.objects.filter(job=job, finished_at__isnull=True).values_list("pk", flat=True):
            enqueue.batches([batch_id])
            report.batches_requeued.append(batch_id)


def _training_repair(report: RepairReport, cutoff) -> None:
    versions = ModelVersion.objects.filter(
        status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING], cancel_requested=False
    ).filter(Q(started_at__lte=cutoff) | Q(started_at__isnull=True, created_at__lte=cutoff))
    waiting = None
    for version in versions:
        if model_version_claimed(model_version_id=version.pk):
            continue  # a live process trains it
        if waiting is None:
            waiting = queue_length("training")
        if waiting:
            continue
        ml_tasks.model_version_train_task.delay(version.pk)  # a duplicate finds the claim taken and backs off
        report.versions_requeued.append(version.pk)


def _missing_images_index(report: RepairReport, cutoff) -> None:
    versions = (
        ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED)
        .filter(
            Q(serving__is_active=True)
            | Q(serving__auto_activate=True, index_jobs__isnull=True, finished_at__lte=cutoff)
        )
        .select_related("serving")
        .distinct()
    )
    for version in versions:
        if IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED).exists():
            continue  # a job runs: its own batches are repaired above
        missing = (
            ProductImage.objects.filter(created_at__lte=cutoff)
            .exclude(embeddings__model_version=version)
            .exclude(embedding_failures__model_version=version)
        )
        if version.serving.is_active and not missing.exists():
            continue
        job = index_job_start(model_version=version, only_missing=True)
        report.jobs_started.append(job.pk)
