"""pytest's entry point (pytest.ini loads it with -p): the database is there before Django's settings."""

import pytest

from config.database import database_ensure


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # A wrapper runs before pytest-django's own hook, which loads the settings.
    database_ensure()
    return (yield)
