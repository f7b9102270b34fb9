"""pytest's entry point (pytest.ini loads it with -p): the database is there before Django's settings."""

import os

import pytest

from config import celery
from config.database import database_ensure

if celery.SETTINGS_DEFAULTED:
    # Importing `config` (its Celery app) set the base settings; pytest.ini's test settings apply.
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # A wrapper runs before pytest-django's own hook, which loads the settings.
    database_ensure()
    return (yield)
