"""Vectors in pgvector: indexing/, serving/, queries/ and admin/, with models, storage, Celery tasks,
receivers, views and the JSON API beside them. May import config, catalog and ml; nothing below imports it."""
