import os

from django.core.wsgi import get_wsgi_application

from .database import database_ensure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
database_ensure()
application = get_wsgi_application()
