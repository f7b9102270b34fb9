"""manage.py activate_model N [--force]: what the admin's Activate button does."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.serving.activation import ActivationRefused, model_version_activate

from ._versions import model_version_get


class Command(BaseCommand):
    help = (
        "Make model version N the one every search uses. Refused, as in the admin, unless it succeeded "
        "and its vectors cover the catalogue; --force skips only the coverage check."
    )

    def add_arguments(self, parser):
        parser.add_argument("model_version", type=int, metavar="N")
        parser.add_argument("--force", action="store_true", help="Activate even if some images have no vector yet.")

    def handle(self, *args, model_version: int, force: bool, **options):
        version = model_version_get(model_version)
        try:
            model_version_activate(model_version=version, force=force)
        except ActivationRefused as exc:  # the admin shows the same message
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Model version #{version.pk} is now active: every search uses it."))
