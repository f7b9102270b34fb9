"""Reindex jobs (with live progress bars) and embedding failures, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from ..indexing.progress import index_job_status
from ..models import EmbeddingFailure, IndexJob


@admin.register(IndexJob)
class IndexJobAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "status", "progress", "done", "failed", "total", "created_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["model_version"]
    readonly_fields = [
        "model_version",
        "status",
        "progress",
        "total",
        "done",
        "failed",
        "batches_total",
        "batches_done",
        "error",
        "created_at",
        "finished_at",
    ]
    fields = readonly_fields

    class Media:
        js = ["search/index_job_progress.js"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs start from the model version (search.indexing.jobs.index_job_start)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Progress")
    def progress(self, job: IndexJob) -> str:
        status_url = reverse("admin:search_indexjob_status", args=[job.pk])
        percent = round(100 * job.progress_fraction, 1)
        return format_html(
            '<span class="index-job-progress" data-status-url="{}" data-finished="{}">'
            '<progress max="100" value="{}" style="width: 12em"></progress> '
            '<span class="index-job-progress-text">{} of {} ({} failed) · {}</span></span>',
            status_url,
            "1" if job.is_finished else "0",
            percent,
            f"{job.processed:,}",
            f"{job.total:,}",
            f"{job.failed:,}",
            job.get_status_display(),
        )

    def get_urls(self):
        status = path("<int:pk>/status/", self.admin_site.admin_view(self.status_view), name="search_indexjob_status")
        return [status, *super().get_urls()]

    def status_view(self, request, pk: int) -> JsonResponse:
        """What the progress bars poll while a job runs."""
        if not self.has_view_permission(request):
            return JsonResponse({"error": "Not allowed."}, status=403)
        return JsonResponse(index_job_status(get_object_or_404(IndexJob, pk=pk)))


@admin.register(EmbeddingFailure)
class EmbeddingFailureAdmin(admin.ModelAdmin):
    list_display = ["image", "model_version", "reason", "updated_at"]
    list_filter = ["model_version"]
    list_select_related = ["model_version", "image"]
    readonly_fields = ["image", "model_version", "reason", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
