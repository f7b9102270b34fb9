# Two images from one file:
#   docker build --target gpu -t lookalike-gpu .   Celery workers and the trainer: TensorFlow with its
#                                                  CUDA/cuDNN wheels (tensorflow[and-cuda], ~3 GB more)
#   docker build -t lookalike .                    the web server and beat (the last stage, web): plain
#                                                  tensorflow, which photo search runs on the CPU
FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-gpu.txt ./
RUN useradd --create-home lookalike && mkdir -p /data/media /data/models /app/staticfiles \
 && chown -R lookalike /data /app/staticfiles

# Workers that embed and train on an NVIDIA GPU (compose reserves one and sets WORKER_REQUIRE_GPU=1,
# so a worker that cannot use it refuses to start instead of computing on the CPU; ml/workers.py).
FROM base AS gpu
RUN pip install --no-cache-dir -r requirements-gpu.txt
COPY . .
USER lookalike
ENV WORKER_REQUIRE_GPU=1
# Pool processes: config/celery.py's embedding_worker_processes() (one per GPU here).
CMD ["sh", "-c", "exec celery -A config worker -Q embeddings -c \"$(python -c 'from config.celery import embedding_worker_processes as n; print(n())')\" -l info"]

FROM base AS web
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
USER lookalike
# The same (manifest) storage as at run time, DEBUG off: a plain collect would leave no manifest.
# django-admin, not manage.py: collecting static files needs no database, so none is started.
RUN DEBUG=0 SECRET_KEY=build-only CACHE_URL=locmem:// django-admin collectstatic --noinput -v 0 --settings config.settings --pythonpath .
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
