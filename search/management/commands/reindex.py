"""manage.py reindex [--model-version N] [--only-missing] [--wait]: the admin's Reindex button."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from ml.workers import queue_workers_missing
from search.indexing.jobs import index_job_start
from search.models import IndexJob
from search.serving.versions import active_model_version

from ._versions import model_version_get


class Command(BaseCommand):
    help = (
        "Queue a reindex of the catalogue for a model version (the active one unless --model-version) "
        "on the Celery 'embeddings' queue; with --wait, show its progress until it finishes."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model-version", type=int, metavar="N", help="Model version id (default: the active one)."
        )
        parser.add_argument(
            "--only-missing", action="store_true", help="Only images without a vector or failure record."
        )
        parser.add_argument(
            "--wait", action="store_true", help="Wait for the job with a progress bar; exit 1 unless it is done."
        )
        parser.add_argument(
            "--timeout", type=float, default=None, help="With --wait: give up waiting after this many seconds."
        )
        parser.add_argument("--poll", type=float, default=0.5, help="With --wait: seconds between progress checks.")

    def handle(
        self,
        *args,
        model_version: int | None,
        only_missing: bool,
        wait: bool,
        timeout: float | None,
        poll: float,
        **options,
    ):
        if model_version is None:
            version = active_model_version()
            if version is None:
                raise CommandError("No model version is active: name one with --model-version N.")
        else:
            version = model_version_get(model_version)
        try:
            job = index_job_start(model_version=version, only_missing=only_missing)
        except ValueError as exc:  # the admin shows the same message
            raise CommandError(str(exc)) from exc
        if job.joined:
            self.stdout.write(
                f"Reindex job #{job.pk} was already running: {job.images_queued:,} images added, {job.total:,} in all."
            )
        else:
            self.stdout.write(f"Reindex job #{job.pk} started: {job.total:,} images in {job.batches_total} batches.")
        # Said before any progress bar: without a worker the bar would sit at 0% with no reason given.
        no_worker = queue_workers_missing(queue="embeddings") if not job.is_finished else None
        if no_worker:
            self.stderr.write(self.style.WARNING(no_worker))
        if wait:
            self._wait(job, timeout=timeout, poll=poll, no_worker=no_worker)

    def _wait(self, job: IndexJob, *, timeout: float | None, poll: float, no_worker: str | None) -> None:
        from tqdm import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(
            total=job.total, unit="image", desc=f"job #{job.pk}", file=self.stderr._out, dynamic_ncols=True
        ) as bar:
            while True:
                job.refresh_from_db()
                bar.total = job.total
                bar.n = job.processed
                bar.set_postfix_str(f"{job.failed:,} failed · {job.get_status_display()}", refresh=False)
                bar.refresh()
                if job.is_finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandError(
                        f"Reindex job #{job.pk} is still {job.get_status_display().lower()} after {timeout:g} s "
                        f"({job.processed:,} of {job.total:,} images); it goes on on the workers."
                        + (f" {no_worker}" if no_worker else "")
                    )
                time.sleep(poll)
        summary = f"Reindex job #{job.pk} {job.get_status_display().lower()}: {job.done:,} embedded, {job.failed:,} unreadable."
        if job.status != IndexJob.Status.DONE:
            raise CommandError(summary + (f" {job.error}" if job.error else ""))
        self.stdout.write(self.style.SUCCESS(summary))
