"""pytest's entry point (pytest.ini loads it with -p): the database is there before Django's settings."""

import os

import pytest

# Before `config` is imported: its Celery module would otherwise default the settings to config.settings,
# and pytest-django takes an environment variable over pytest.ini's DJANGO_SETTINGS_MODULE.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

from config.database import database_ensure  # noqa: E402 - after the settings default above


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # A wrapper runs before pytest-django's own hook, which loads the settings.
    database_ensure()
    return (yield)
