from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services
from .models import ModelVersion


# Failures of a run itself are recorded on the version (FAILED with its reason) and never retried;
# what is retried is the database being unreachable around it (the claim, the status writes).
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=3,
)
def model_version_train_task(self, model_version_id: int) -> str:
    """Train one model version. A redelivered task (worker killed) resumes from the last checkpoint;
    one delivered while another process trains the version backs off (ml.claims)."""
    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        return "missing"
    ModelVersion.objects.filter(
        pk=model_version_id, status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]
    ).exclude(task_id="foreground").update(task_id=self.request.id or "")
    return services.model_version_train(model_version=version).status
