from django.core.management.base import BaseCommand, CommandError

from ml.models import ModelVersion
from ml.services import EVALUATION_QUERIES, TrainingError, model_version_evaluate
from search.serving.versions import active_model_version

ROW = "{:<28} {:>7} {:>7} {:>7} {:>9}"


class Command(BaseCommand):
    help = "Retrieval quality (P@1, P@10, mAP@100; relevance = same category) of a model next to raw pixels."

    def add_arguments(self, parser):
        # `--version V` is this command's documented flag: it replaces Django's own --version here.
        for group in [parser, *parser._action_groups]:
            group.conflict_handler = "resolve"
        parser.add_argument("--version", type=int, help="model version id (default: the active one)")
        parser.add_argument("--queries", choices=EVALUATION_QUERIES, default="holdout")
        parser.add_argument("--k", type=int, default=10, help="also report P@k (P@1, P@10 and mAP@100 always)")

    def handle(self, *args, version, queries, k, **options):
        if k < 1:
            raise CommandError(f"--k must be positive. Received: {k}")
        if version is None:
            model_version = active_model_version()
            if model_version is None:
                raise CommandError("No model version is active; pass --version ID (see the admin's model list).")
        else:
            model_version = ModelVersion.objects.filter(pk=version).first()
            if model_version is None:
                raise CommandError(f"No model version {version}.")
        if model_version.status != ModelVersion.Status.SUCCEEDED:
            raise CommandError(f"Model version {model_version.pk} is {model_version.status}, not trained.")
        try:
            figures = model_version_evaluate(model_version=model_version, queries=queries, k=k)
        except (TrainingError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{figures['queries']} queries against {figures['catalogue']} catalogue images ({queries})")
        self.stdout.write(ROW.format("", "P@1", "P@10", f"P@{k}", "mAP@100"))
        for name, row in ((str(model_version), figures["model"]), ("raw pixels (L2)", figures["pixels"])):
            self.stdout.write(
                ROW.format(
                    name,
                    *(
                        f"{row[key]:.3f}"
                        for key in ("precision_at_1", "precision_at_10", "precision_at_k", "map_at_100")
                    ),
                )
            )
        if "accuracy" in figures:
            self.stdout.write(f"Category guess accuracy on the test images: {figures['accuracy']:.3f}")
