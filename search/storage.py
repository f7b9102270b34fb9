"""How a model version's vectors are stored: float32 `vector` in ImageEmbedding.embedding, or
float16 `halfvec` (pgvector ≥ 0.7) in ImageEmbedding.embedding_half, each with its HNSW operator
class. Every reader and writer of a version's vectors asks its storage for the column and the cast,
so a query's ORDER BY is exactly the expression of the version's partial HNSW index.

Two columns, not one `vector` column with a `(embedding::halfvec(D))` expression index: the
expression index halves only the index, while the rows would still hold float32
(docs/benchmarks.md, "halfvec storage", measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Field
from django.db.models.functions import Cast

from .fields import HalfVectorField, VectorField


@dataclass(frozen=True)
class VectorStorage:
    name: str  # the pgvector type, as ServingState.storage records it
    column: str  # ImageEmbedding's field (and column)
    opclass: str  # the HNSW operator class for L2 distance
    field_class: type[Field]

    def sql(self, dim: int, *, alias: str = "") -> str:
        """The indexed expression in SQL, e.g. `b.embedding_half::halfvec(128)`."""
        prefix = f"{alias}." if alias else ""
        return f"{prefix}{self.column}::{self.name}({int(dim)})"

    def cast(self, dim: int) -> Cast:
        """The indexed expression for the ORM."""
        return Cast(self.column, self.field_class(dimensions=int(dim)))

    def __str__(self) -> str:
        return self.name


VECTOR = VectorStorage("vector", "embedding", "vector_l2_ops", VectorField)
HALFVEC = VectorStorage("halfvec", "embedding_half", "halfvec_l2_ops", HalfVectorField)
STORAGES = {storage.name: storage for storage in (VECTOR, HALFVEC)}
STORAGE_CHOICES = [(VECTOR.name, "vector (float32)"), (HALFVEC.name, "halfvec (float16)")]


def storage_named(name: str) -> VectorStorage:
    """The storage called `name`; ValueError naming the choices otherwise."""
    try:
        return STORAGES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Vector storage must be one of {', '.join(STORAGES)}. Received: {name!r}") from None


def vector_array(value) -> np.ndarray:
    """A stored vector (pgvector's Vector or HalfVector, a NumPy array, a list) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)
