#!/usr/bin/env python
import os
import sys


def main() -> None:
    # `manage.py test` runs under the test settings unless DJANGO_SETTINGS_MODULE says otherwise.
    test = sys.argv[1:2] == ["test"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test" if test else "config.settings")
    from config.database import database_ensure

    database_ensure()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
