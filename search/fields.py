"""pgvector's VectorField, writing NumPy vectors without a Python loop per float."""

from __future__ import annotations

import numpy as np
from pgvector.django import VectorField as _PgVectorField


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form of a 1-D float vector. '%.9g' gives every float32 back exactly, and one
    C-level format per vector is much faster than pgvector-python's str(float(v)) per element, a
    large share of an index batch's database write (bench/indexing.py measures it)."""
    values = np.asarray(vector, dtype=np.float32).tolist()
    return "[" + ",".join(["%.9g"] * len(values)) % tuple(values) + "]"


class VectorField(_PgVectorField):
    def get_prep_value(self, value):
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "f" and not self.dimensions:
            if not np.isfinite(value).all():
                raise ValueError("A vector must not contain NaN or infinity.")
            return vector_text(value)
        return super().get_prep_value(value)
