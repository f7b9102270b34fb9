"""Training from the command line (ml.services), and with --activate / --demo what serves after it:
so it lives in search, the layer that knows both."""

from django.core.management.base import BaseCommand, CommandError

from ml import hparams as hp
from ml.architectures import ARCHITECTURES, CLASSIFIER_VARIANTS
from ml.models import ModelVersion
from ml.services import TIME_BUDGET_EPOCHS, model_version_train
from search.indexing.repair import lifecycle_repair
from search.models import IndexJob, ServingState
from search.serving.activation import model_version_train_start
from search.storage import STORAGES

# `make run` on first start: a model good enough to show similar items within minutes on 2 cores.
DEMO_EPOCHS = 2


def _tqdm_callback():
    import keras
    from tqdm import tqdm

    class Bar(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs = self.params.get("epochs")
            # A wall-time budget has no fixed number of chunks: the bar shows the budget used instead.
            of = f"/{epochs}" if epochs and epochs < TIME_BUDGET_EPOCHS else f", budget {self.used:.0%} used"
            self.bar = tqdm(total=self.params.get("steps"), desc=f"epoch {epoch + 1}{of}", unit="step")

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            self.used = float((logs or {}).get("budget_used", self.used))
            self.bar.close()

    bar = Bar()
    bar.used = 0.0
    return bar


class Command(BaseCommand):
    help = "Train an embedding model on the catalogue's images (in this process, or on a Celery worker)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--architecture",
            choices=ARCHITECTURES,
            help="default: the one that measures best on a catalogue like this (ml.architectures.recommend)",
        )
        parser.add_argument("--variant", choices=CLASSIFIER_VARIANTS, help="classifier only (default: cnn)")
        parser.add_argument("--epochs", type=int)
        parser.add_argument(
            "--budget",
            help="train for a budget instead of epochs: steps (20000steps), wall time (30m, 2h) or "
            "auto (grows with the square root of the products); each step samples products, "
            "their photos and augmented views",
        )
        parser.add_argument("--image-size", type=int, dest="image_size")
        parser.add_argument("--dim", type=int, help="embedding dimension (at most 2000)")
        parser.add_argument("--batch-size", type=int, dest="batch_size")
        parser.add_argument("--lr", type=float, help="learning rate")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--backbone", choices=hp.BACKBONES, help="deep_ranking only: a Keras Applications backbone")
        parser.add_argument(
            "--backbone-weights",
            dest="backbone_weights",
            help="local ImageNet weights file for --backbone (nothing is downloaded)",
        )
        parser.add_argument(
            "--precision",
            choices=hp.PRECISIONS,
            help="arithmetic while training (default auto: bfloat16 where the CPU/GPU has it)",
        )
        parser.add_argument(
            "--framing",
            choices=("on", "off"),
            help="crop each image to its item before the model sees it (default: on, except "
            "the Fashion-MNIST-sized classifier)",
        )
        parser.add_argument(
            "--localiser",
            choices=("on", "off"),
            help="also learn where items are in busy photos (ml.localiser; default: hparams)",
        )
        parser.add_argument(
            "--scene-views",
            type=float,
            dest="scene_views",
            help="deep_ranking: share of training views on procedural surfaces (0-1)",
        )
        parser.add_argument("--activate", action="store_true", help="index the catalogue afterwards and activate")
        parser.add_argument("--background", action="store_true", help="queue it for a Celery worker and return")
        parser.add_argument("--demo", action="store_true", help="make run: queue the default model if none exists")
        parser.add_argument(
            "--storage",
            choices=sorted(STORAGES),
            help="how its vectors are stored: halfvec (float16) or vector (float32); default VECTOR_STORAGE",
        )

    def _demo_resume(self) -> bool:
        """make run starts fresh workers, so nothing of an interrupted demo is still running: the
        lifecycle repair (search.indexing.repair, what Celery beat runs) sends again whatever was lost
        (training resumes from its checkpoint; indexing embeds only what is missing).
        Returns True when a model is active or on its way."""
        for line in lifecycle_repair(stale_after=0).lines():
            self.stdout.write(line)
        if ServingState.objects.filter(is_active=True).exists():
            self.stdout.write("A model is active; not training another.")
            return True
        return (
            ModelVersion.objects.filter(status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]).exists()
            or IndexJob.objects.filter(
                status__in=IndexJob.UNFINISHED, model_version__serving__auto_activate=True
            ).exists()
        )

    def handle(self, *args, architecture, variant, activate, background, demo, storage=None, **options):
        if demo:
            if self._demo_resume():
                return
            options["epochs"] = options["epochs"] or DEMO_EPOCHS
            activate = background = True
        if variant and architecture != "classifier":
            raise CommandError(f"--variant applies to the classifier only. Received: --architecture {architecture}")
        keys = (
            "epochs",
            "budget",
            "image_size",
            "dim",
            "batch_size",
            "lr",
            "seed",
            "backbone",
            "backbone_weights",
            "precision",
            "scene_views",
        )
        overrides = {key: options[key] for key in keys if options.get(key) is not None}
        if options.get("framing"):
            overrides["framing"] = options["framing"] == "on"
        if options.get("localiser"):
            overrides["localiser"] = options["localiser"] == "on"
        try:
            # In the foreground this process trains it: a queued task too would train it twice.
            version = model_version_train_start(
                architecture=architecture,
                variant=variant,
                overrides=overrides,
                auto_activate=activate,
                enqueue=background,
                storage=storage,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if background:
            self.stdout.write(
                self.style.SUCCESS(f"Queued model version {version.pk} ({version}) for a training worker.")
            )
            return
        ModelVersion.objects.filter(pk=version.pk).update(task_id="foreground")
        version = model_version_train(model_version=version, extra_callbacks=(_tqdm_callback(),))
        if version.status != ModelVersion.Status.SUCCEEDED:
            raise CommandError(f"Model version {version.pk} {version.status}: {version.error}")
        spent = version.metrics.get("budget")
        if spent:
            self.stdout.write(
                f"Budget {spent['text']}: {spent['steps']} steps in {spent['seconds']:.0f} s "
                f"({spent['used']:.0%} used); peak memory {version.metrics.get('peak_rss_mib')} MiB."
            )
        located = version.metrics.get("localiser")
        if located:
            self.stdout.write(
                f"Item localiser: box IoU >= 0.7 on {located['share_iou_0_7']:.0%} of held-out composites "
                f"(mean {located['box_iou_mean']:.2f})."
            )
        elif version.metrics.get("localiser_skipped") and version.hparams.get("localiser"):
            self.stdout.write(
                self.style.WARNING(
                    f"No item localiser: {version.metrics['localiser_skipped']}. Photo search finds items "
                    "against the photo's own background."
                )
            )
        figures = version.metrics.get("holdout", {})
        model, pixels = figures.get("model", {}), figures.get("pixels", {})
        self.stdout.write(
            self.style.SUCCESS(
                f"Model version {version.pk} trained: dim {version.dim}; holdout P@1 {model.get('precision_at_1', float('nan')):.3f} "
                f"P@10 {model.get('precision_at_10', float('nan')):.3f} mAP@100 {model.get('map_at_100', float('nan')):.3f} "
                f"(raw pixels: P@1 {pixels.get('precision_at_1', float('nan')):.3f} P@10 {pixels.get('precision_at_10', float('nan')):.3f})"
            )
        )
