"""Model versions as the index sees them: train, reindex, activate, cancel, delete vectors, the
dashboard and the live panel."""

from __future__ import annotations

import shutil

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from ml.models import ModelVersion
from ml.plots import loss_curve_svg
from ml.runtime import forget
from ml.services import model_version_cancel, recommended_architecture
from ml.workers import queue_workers_missing, worker_devices

from ..indexing.jobs import index_job_cancel, index_job_start
from ..models import IndexJob
from ..queries.weights import PHOTO, QUERY_WEIGHTS, SIMILAR
from ..serving.activation import (
    ActivationRefused,
    VectorsInUse,
    model_version_activate,
    model_version_train_start,
    model_version_vectors_delete,
)
from ..serving.versions import model_version_is_active
from ..storage import STORAGE_CHOICES, VECTOR
from . import dashboard
from .forms import TrainServeForm
from .status import figure, progress_bar, version_status

# What each button needs: training and cancelling are ml's permissions, serving ones are search's.
PERMISSIONS = {
    "train": "ml.train_modelversion",
    "cancel": "ml.cancel_modelversion",
    "reindex": "search.reindex_modelversion",
    "activate": "search.activate_modelversion",
}


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """The model versions' admin: training them (ml) and what serves (search). It lives in search, the
    layer that knows both; its pages stay under /admin/ml/modelversion/."""

    list_display = ["__str__", "status", "training", "p_at_1", "p_at_10", "dim", "is_active", "created_at"]
    list_filter = ["architecture", "status", "serving__is_active"]
    list_select_related = ["serving"]
    readonly_fields = [
        "architecture",
        "hparams",
        "status",
        "cancel_requested",
        "epoch",
        "epochs",
        "step",
        "steps_per_epoch",
        "loss_history",
        "metrics",
        "dim",
        "image_size",
        "label_names",
        "error",
        "is_active",
        "auto_activate",
        "vector_storage",
        "vector_layout",
        "item_localiser",
        "task_id",
        "created_at",
        "started_at",
        "finished_at",
        "workdir_path",
    ]
    change_form_template = "admin/ml/modelversion/change_form.html"
    change_list_template = "admin/ml/modelversion/change_list.html"

    def has_add_permission(self, request):
        return False  # versions are made by "Train a new model", never typed in

    def has_delete_permission(self, request, obj=None):
        # The active version serves every query; an unfinished one still has a worker writing to it.
        if obj is not None and (model_version_is_active(model_version=obj) or not obj.is_finished):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        pk, workdir = obj.pk, obj.workdir
        model_version_vectors_delete(model_version=obj)  # its HNSW index is dropped concurrently after commit
        super().delete_model(request, obj)
        # The admin deletes in a transaction: the files go only once the row is gone for good.
        transaction.on_commit(lambda: (forget(pk), shutil.rmtree(workdir, ignore_errors=True)))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            if model_version_is_active(model_version=obj) or not obj.is_finished:
                messages.error(request, f"Model version #{obj.pk} is active or still running: not deleted.")
            else:
                self.delete_model(request, obj)

    @admin.display(description="Active", boolean=True)
    def is_active(self, obj):
        serving = getattr(obj, "serving", None)
        return bool(serving and serving.is_active)

    @admin.display(description="Auto-activate", boolean=True)
    def auto_activate(self, obj):
        serving = getattr(obj, "serving", None)
        return bool(serving and serving.auto_activate)

    @admin.display(description="Vector storage")
    def vector_storage(self, obj):
        serving = getattr(obj, "serving", None)  # no serving state: its vectors, if any, are float32
        return dict(STORAGE_CHOICES)[serving.storage if serving else VECTOR.name]

    @admin.display(description="Vector and its weights per use")
    def vector_layout(self, obj):
        """The served vector's parts (ml.layers.vector_parts) and how photo search and similar items
        weigh each (search.queries.weights)."""
        parts = (obj.metrics or {}).get("vector_parts")
        if not parts:
            return "One part: every dimension counts the same for photo search and similar items."
        names = {
            "instance_embedding": "this product's look",
            "probabilities": "category",
            "colours": "colour group",
            "item_colours": "measured colours",
        }
        return format_html_join(
            format_html("<br>"),
            "{}: {} dims, share {} · photo search ×{} · similar items ×{}",
            (
                (
                    names.get(p["name"], p["name"]),
                    p["size"],
                    f"{p['share']:.2f}",
                    QUERY_WEIGHTS[PHOTO].get(p["name"], 1.0),
                    QUERY_WEIGHTS[SIMILAR].get(p["name"], 1.0),
                )
                for p in parts
            ),
        )

    @admin.display(description="Item localiser (busy photos)")
    def item_localiser(self, obj):
        """The localiser's figures on held-out composites (ml.localiser), or why the version has none."""
        metrics = obj.metrics or {}
        figures = metrics.get("localiser")
        if not figures:
            reason = metrics.get("localiser_skipped") or "not trained with this version"
            return f"None ({reason}): photo search finds items against the photo's own background."
        seconds = (figures.get("seconds") or {}).get("total")
        return (
            f"Box IoU ≥ 0.7 on {100 * figures.get('share_iou_0_7', 0):.0f}% of "
            f"{figures.get('eval_composites', '?')} held-out composites (mean IoU {figures.get('box_iou_mean', 0):.2f}); "
            f"learned from {figures.get('train_cutouts', '?')} cut-outs in {figures.get('steps', '?')} steps"
            + (f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
            + "."
        )

    @admin.display(description="Training")
    def training(self, obj):
        return progress_bar(obj.progress_fraction, f"epoch {obj.epoch}/{obj.epochs}")

    @admin.display(description="P@1 (holdout)")
    def p_at_1(self, obj):
        return figure(obj, "precision_at_1")

    @admin.display(description="P@10 (holdout)")
    def p_at_10(self, obj):
        return figure(obj, "precision_at_10")

    @admin.display(description="Artifacts")
    def workdir_path(self, obj):
        return str(obj.workdir)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("train/", wrap(self.train_view), name="ml_modelversion_train"),
            path("dashboard/", wrap(self.dashboard_view), name="ml_modelversion_dashboard"),
            path("<int:pk>/status.json", wrap(self.status_view), name="ml_modelversion_status"),
            path("<int:pk>/reindex/", wrap(require_POST(self.reindex_view)), name="ml_modelversion_reindex"),
            path("<int:pk>/activate/", wrap(require_POST(self.activate_view)), name="ml_modelversion_activate"),
            path("<int:pk>/cancel/", wrap(require_POST(self.cancel_view)), name="ml_modelversion_cancel"),
            path(
                "<int:pk>/delete-vectors/",
                wrap(require_POST(self.delete_vectors_view)),
                name="ml_modelversion_delete_vectors",
            ),
        ] + super().get_urls()

    def _require(self, request, permission: str) -> None:
        if not request.user.has_perm(PERMISSIONS[permission]):
            raise PermissionDenied(f"You need the “Can {permission}” permission for model versions.")

    def _back(self, pk: int):
        return redirect(reverse("admin:ml_modelversion_change", args=[pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if version is not None:
            user = request.user
            extra.update(
                loss_curve=loss_curve_svg(version.loss_history),
                live=version_status(version),
                can={p: user.has_perm(PERMISSIONS[p]) for p in ("reindex", "activate", "cancel")},
            )
        return super().change_view(request, object_id, form_url, extra)

    def train_view(self, request):
        self._require(request, "train")
        form = TrainServeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                version = model_version_train_start(
                    architecture=form.chosen_architecture(),
                    variant=form.cleaned_data.get("variant") or None,
                    overrides=form.overrides(),
                    auto_activate=form.cleaned_data["auto_activate"],
                )
            except ValueError as exc:  # what this catalogue cannot train (budget, disk): nothing was recorded
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Training of model version #{version.pk} is queued for a worker.")
                return self._back(version.pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "opts": self.model._meta,
            "title": "Train a new model",
            "recommendation": recommended_architecture(),
        }
        return TemplateResponse(
            request, "admin/ml/modelversion/train.html", context, status=400 if form.errors else 200
        )

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = dashboard.dashboard_versions()
        chosen = request.GET.get("version", "")
        version = None
        if chosen.isdigit():
            version = get_object_or_404(ModelVersion, pk=int(chosen))
        else:
            version = next((r.version for r in rows if r.is_active), None) or next(
                (r.version for r in rows if r.embedded), None
            )
        emap = dashboard.embedding_map(model_version=version) if version is not None else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Model dashboard",
            "rows": rows,
            "map_version": version,
            "map_choices": [r.version for r in rows if r.embedded],
            "emap": emap,
            "map_svg": dashboard.embedding_map_svg(emap) if emap else None,
            "loss_curve": loss_curve_svg(version.loss_history) if version is not None else None,
            "can_train": request.user.has_perm(PERMISSIONS["train"]),
            "workers": worker_devices(),
        }
        return TemplateResponse(request, "admin/ml/modelversion/dashboard.html", context)

    def status_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(version_status(get_object_or_404(ModelVersion, pk=pk), polling=True))

    def reindex_view(self, request, pk):
        self._require(request, "reindex")
        version = get_object_or_404(ModelVersion, pk=pk)
        try:
            job = index_job_start(model_version=version, only_missing=request.POST.get("only_missing") == "1")
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            if job.joined:
                messages.success(
                    request,
                    f"Reindex job #{job.pk} was already running: {job.images_queued:,} images "
                    f"added, {job.total:,} in all.",
                )
            else:
                messages.success(
                    request, f"Reindex job #{job.pk} started: {job.total:,} images in {job.batches_total} batches."
                )
            no_worker = queue_workers_missing(queue="embeddings") if not job.is_finished else None
            if no_worker:
                messages.warning(request, no_worker)
        return self._back(pk)

    def activate_view(self, request, pk):
        self._require(request, "activate")
        version = get_object_or_404(ModelVersion, pk=pk)
        try:
            model_version_activate(model_version=version, force=request.POST.get("force") == "1")
        except ActivationRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Model version #{pk} is now active: every search uses it.")
        return self._back(pk)

    def cancel_view(self, request, pk):
        self._require(request, "cancel")
        version = get_object_or_404(ModelVersion, pk=pk)
        if not version.is_finished:
            model_version_cancel(model_version=version)
            messages.success(request, f"Cancelling training of model version #{pk}.")
        for job in IndexJob.objects.filter(model_version=version, status__in=IndexJob.UNFINISHED):
            index_job_cancel(job=job)
            messages.success(request, f"Cancelled reindex job #{job.pk} of model version #{pk}.")
        return self._back(pk)

    def delete_vectors_view(self, request, pk):
        self._require(request, "reindex")
        version = get_object_or_404(ModelVersion, pk=pk)
        try:
            deleted = model_version_vectors_delete(model_version=version)
        except VectorsInUse as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Deleted {deleted:,} vectors of model version #{pk}.")
        return self._back(pk)
