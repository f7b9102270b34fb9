"""The admin of what search owns: model versions as the index sees them, reindex jobs, embedding
failures and the near-duplicates page. Imports anything in search/ and the layers below."""

from . import duplicates, jobs, versions  # noqa: F401  (each registers its pages)
