"""What the model-version commands share: finding a version by id the way the admin's URLs do."""

from __future__ import annotations

from django.core.management.base import CommandError

from ml.models import ModelVersion


def model_version_get(pk: int) -> ModelVersion:
    version = ModelVersion.objects.filter(pk=pk).first()
    if version is None:
        raise CommandError(f"There is no model version #{pk}.")
    return version
