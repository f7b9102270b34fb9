"""pgvector's VectorField and HalfVectorField, writing NumPy vectors without a Python loop per float."""

from __future__ import annotations

import numpy as np
from pgvector.django import HalfVectorField as _PgHalfVectorField
from pgvector.django import VectorField as _PgVectorField

HALF_MAX = 65504.0  # the largest finite float16


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form of a 1-D float vector. '%.9g' gives every float32 back exactly, and one
    C-level format per vector is much faster than pgvector-python's str(float(v)) per element, a
    large share of an index batch's database write (bench/indexing.py measures it)."""
    values = np.asarray(vector, dtype=np.float32).tolist()
    return "[" + ",".join(["%.9g"] * len(values)) % tuple(values) + "]"


def vector_check(vector: np.ndarray, *, half: bool = False) -> None:
    """ValueError unless every value is finite (and, for halfvec, within float16's range)."""
    if not np.isfinite(vector).all():
        raise ValueError("A vector must not contain NaN or infinity.")
    if half and vector.size and float(np.abs(vector).max()) > HALF_MAX:
        raise ValueError(
            f"A halfvec vector must stay within ±{HALF_MAX:g} (float16). Received a value of "
            f"{float(np.abs(vector).max()):g}: store this model version's vectors as vector instead."
        )


class VectorField(_PgVectorField):
    def get_prep_value(self, value):
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "f" and not self.dimensions:
            vector_check(value)
            return vector_text(value)
        return super().get_prep_value(value)


class HalfVectorField(_PgHalfVectorField):
    """float16 storage. The float32 text goes to PostgreSQL, which rounds it to half precision, so a
    version's stored vectors are the model's float32 output rounded once, by the server."""

    def get_prep_value(self, value):
        if isinstance(value, (list, tuple)):
            value = np.asarray(value, dtype=np.float64)
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "f" and not self.dimensions:
            vector_check(value, half=True)
            return vector_text(value)
        return super().get_prep_value(value)
