# One image for the web server and the Celery workers.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home lookalike && mkdir -p /data/media /data/models /app/staticfiles \
 && chown -R lookalike /data /app/staticfiles
USER lookalike
# The same (manifest) storage as at run time, DEBUG off: a plain collect would leave no manifest.
# django-admin, not manage.py: collecting static files needs no database, so none is started.
RUN DEBUG=0 SECRET_KEY=build-only CACHE_URL=locmem:// django-admin collectstatic --noinput -v 0 --settings config.settings --pythonpath .
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
