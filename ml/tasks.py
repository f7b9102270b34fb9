from celery import shared_task

from . import services
from .models import ModelVersion


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def model_version_train_task(self, model_version_id: int) -> str:
    """Train one model version. A redelivered task (worker killed) resumes from the last checkpoint."""
    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is None:
        return "missing"
    ModelVersion.objects.filter(pk=model_version_id).update(task_id=self.request.id or "")
    return services.model_version_train(model_version=version).status
