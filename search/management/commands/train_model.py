"""Training from the command line (ml.services), and with --activate / --demo what serves after it:
so it lives in search, the layer that knows both."""

from django.core.management.base import BaseCommand, CommandError

from ml import hparams as hp
from ml.models import ModelVersion
from ml.services import model_version_train
from ml.tasks import model_version_train_task
from search.models import ServingState
from search.services import index_job_start, model_version_train_start

# `make run` on first start: a model good enough to show similar items within minutes on 2 cores.
DEMO_EPOCHS = 2


def _tqdm_callback():
    import keras
    from tqdm import tqdm

    class Bar(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(total=self.params.get("steps"), desc=f"epoch {epoch + 1}/{self.params.get('epochs')}", unit="step")

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    return Bar()


class Command(BaseCommand):
    help = "Train an embedding model on the catalogue's images (in this process, or on a Celery worker)."

    def add_arguments(self, parser):
        parser.add_argument("--architecture", choices=hp.ARCHITECTURES, default=hp.DEFAULT_ARCHITECTURE)
        parser.add_argument("--variant", choices=hp.CLASSIFIER_VARIANTS, help="classifier only (default: cnn)")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--image-size", type=int, dest="image_size")
        parser.add_argument("--dim", type=int, help="embedding dimension (at most 2000)")
        parser.add_argument("--batch-size", type=int, dest="batch_size")
        parser.add_argument("--lr", type=float, help="learning rate")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--backbone", choices=hp.BACKBONES, help="deep_ranking only: a Keras Applications backbone")
        parser.add_argument("--backbone-weights", dest="backbone_weights",
                            help="local ImageNet weights file for --backbone (nothing is downloaded)")
        parser.add_argument("--precision", choices=hp.PRECISIONS,
                            help="arithmetic while training (default auto: bfloat16 where the CPU/GPU has it)")
        parser.add_argument("--activate", action="store_true", help="index the catalogue afterwards and activate")
        parser.add_argument("--background", action="store_true", help="queue it for a Celery worker and return")
        parser.add_argument("--demo", action="store_true", help="make run: queue the default model if none exists")

    def _demo_resume(self) -> bool:
        """make run starts fresh workers, so nothing of an interrupted demo is still running:
        queue it again (training resumes from its checkpoint; indexing embeds only what is missing).
        Returns True when a model is active or on its way."""
        if ServingState.objects.filter(is_active=True).exists():
            self.stdout.write("A model is active; not training another.")
            return True
        resumed = False
        for version in ModelVersion.objects.filter(status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]):
            model_version_train_task.delay(version.pk)
            self.stdout.write(f"Resuming the training of model version {version.pk}.")
            resumed = True
        for version in ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED, serving__auto_activate=True):
            index_job_start(model_version=version, only_missing=True)
            self.stdout.write(f"Resuming the indexing of model version {version.pk}; it activates when done.")
            resumed = True
        return resumed

    def handle(self, *args, architecture, variant, activate, background, demo, **options):
        if demo:
            if self._demo_resume():
                return
            options["epochs"] = options["epochs"] or DEMO_EPOCHS
            activate = background = True
        if variant and architecture != "classifier":
            raise CommandError(f"--variant applies to the classifier only. Received: --architecture {architecture}")
        keys = ("epochs", "image_size", "dim", "batch_size", "lr", "seed", "backbone", "backbone_weights",
                "precision")
        overrides = {key: options[key] for key in keys if options.get(key) is not None}
        try:
            version = model_version_train_start(
                architecture=architecture, variant=variant, overrides=overrides, auto_activate=activate
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if background:
            self.stdout.write(self.style.SUCCESS(f"Queued model version {version.pk} ({version}) for a training worker."))
            return
        ModelVersion.objects.filter(pk=version.pk).update(task_id="foreground")
        version = model_version_train(model_version=version, extra_callbacks=(_tqdm_callback(),))
        if version.status != ModelVersion.Status.SUCCEEDED:
            raise CommandError(f"Model version {version.pk} {version.status}: {version.error}")
        figures = version.metrics.get("holdout", {})
        model, pixels = figures.get("model", {}), figures.get("pixels", {})
        self.stdout.write(
            self.style.SUCCESS(
                f"Model version {version.pk} trained: dim {version.dim}; holdout P@1 {model.get('precision_at_1', float('nan')):.3f} "
                f"P@10 {model.get('precision_at_10', float('nan')):.3f} mAP@100 {model.get('map_at_100', float('nan')):.3f} "
                f"(raw pixels: P@1 {pixels.get('precision_at_1', float('nan')):.3f} P@10 {pixels.get('precision_at_10', float('nan')):.3f})"
            )
        )
