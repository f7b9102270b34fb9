"""Mixed precision: 16-bit arithmetic where the hardware has it, float32 weights and outputs.

Training a model under "mixed_bfloat16" keeps every variable in float32 and computes in bfloat16,
which halves the time of a convolution on CPUs with AVX512-BF16/AMX. On an NVIDIA GPU with tensor
cores (compute capability 7.0, Volta, and newer) "auto" trains under "mixed_float16" instead: the
tensor cores' float16 path, which Keras pairs with loss scaling (compile() wraps the optimizer in a
LossScaleOptimizer) so small gradients do not vanish; bfloat16 would need Ampere (8.0) or newer.
Heads (embedding normalisation, logits, softmax, reconstructions) always run in float32, and the
exported embedder is float32 throughout (ml.architectures.float32_embedder), so indexing gives the same vectors on any
machine.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import keras

from ml.cpu import cpu_info
from ml.hparams import PRECISIONS

# The dtype every layer that produces a model output passes explicitly.
OUTPUT_DTYPE = "float32"


@functools.cache
def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, or None without a usable GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
    return tuple(int(c) for c in capability)


@functools.cache
def hardware_bfloat16() -> bool:
    """True where bfloat16 matmuls/convolutions are native: the first GPU has compute capability
    8.0 or more, or (with no GPU) the CPU reports avx512_bf16 or amx_bf16."""
    capability = gpu_compute_capability()
    if capability is not None:
        return capability >= (8, 0)
    flags = cpu_info()[1]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_policy(*, gpu_capability: tuple[int, int] | None, cpu_bfloat16: bool) -> str:
    """What precision="auto" trains under: a GPU with tensor cores mixed_float16; else, where the CPU
    computes bfloat16 natively, mixed_bfloat16; else float32."""
    if gpu_capability is not None:
        return "mixed_float16" if gpu_capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_bfloat16 else "float32"


def resolve(precision: str) -> str:
    """The dtype policy name for an hparams precision ("auto": see auto_policy)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision == "auto":
        capability = gpu_compute_capability()
        return auto_policy(gpu_capability=capability, cpu_bfloat16=capability is None and hardware_bfloat16())
    return precision


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Layers created inside use the dtype policy `name`; the previous global policy comes back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
