"""Which device this machine embeds and trains on, and what follows from it (precision, batch size).

TensorFlow computes on the first usable GPU and falls back to the CPU without a word: an image
without CUDA libraries, a container without the GPU passed through, or a driver too old all look
like "no GPU". `device_detect()` says which it is, with the reason where TensorFlow gives one.

A Celery worker's main process must not initialise TensorFlow (and CUDA) before it forks its pool
(neither survives a fork), so workers ask `device_probe()`, which runs the detection in a fresh
interpreter: `python -m ml.devices` prints the same as JSON.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

from ml.cpu import cpu_info

__all__ = [
    "CPU_EMBEDDING_BATCH_SIZE",
    "ComputeDevice",
    "DeviceProbeError",
    "GPU_EMBEDDING_BATCH_SIZE",
    "device_detect",
    "device_probe",
]

# Images per model call (an indexing task is four of them: settings.EMBEDDING_BATCH_SIZE[_GPU]). A GPU
# does a 28-64 px batch of 1,024 in about the time a CPU does 256.
CPU_EMBEDDING_BATCH_SIZE = 256
GPU_EMBEDDING_BATCH_SIZE = 1024


class DeviceProbeError(RuntimeError):
    """The detection itself could not run (TensorFlow does not import, the probe timed out)."""


@dataclass(frozen=True)
class ComputeDevice:
    kind: str  # "GPU" or "CPU"
    name: str  # the GPU's name (e.g. "NVIDIA L4"), or the CPU's model name
    compute_capability: str | None  # GPU only, e.g. "8.9"
    gpus: int  # GPUs TensorFlow can use
    precision: str  # the dtype policy precision="auto" trains under here (ml.precision)
    embedding_batch_size: int  # images per model call that suit this device
    tensorflow: str
    built_with_cuda: bool  # False: this TensorFlow has no GPU support at all (e.g. plain `tensorflow`
    #                         on a machine without the CUDA wheels of `tensorflow[and-cuda]`)
    note: str = ""  # why there is no usable GPU, where that is known

    @property
    def is_gpu(self) -> bool:
        return self.kind == "GPU"

    def describe(self) -> str:
        """One line for logs and the admin."""
        if self.is_gpu:
            more = f" (+{self.gpus - 1} more)" if self.gpus > 1 else ""
            where = f"GPU {self.name}{more}, compute capability {self.compute_capability}"
        else:
            where = f"CPU {self.name}" + (f" ({self.note})" if self.note else "")
        return f"{where}; training precision {self.precision}, embedding batch {self.embedding_batch_size}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ComputeDevice":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _cpu_name() -> str:
    name = cpu_info()[0] or platform.processor() or platform.machine()
    return f"{name} x {os.cpu_count()}"


def device_detect() -> ComputeDevice:
    """The device TensorFlow computes on in this process (imports TensorFlow, and CUDA where there is
    one: call it only where TensorFlow is to run, or through device_probe)."""
    import tensorflow as tf

    from ml.precision import resolve

    built_with_cuda = bool(tf.test.is_built_with_cuda())
    gpus = tf.config.list_physical_devices("GPU")
    precision = resolve("auto")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability")
        return ComputeDevice(
            kind="GPU",
            name=str(details.get("device_name") or gpus[0].name),
            compute_capability=".".join(str(c) for c in capability) if capability else None,
            gpus=len(gpus),
            precision=precision,
            embedding_batch_size=GPU_EMBEDDING_BATCH_SIZE,
            tensorflow=tf.__version__,
            built_with_cuda=built_with_cuda,
        )
    if not built_with_cuda:
        note = "this TensorFlow is built without CUDA"
    elif not (os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/dxg")):
        note = "no NVIDIA device is visible (no driver, or the container was started without the GPU)"
    elif importlib.util.find_spec("nvidia") is None:
        # pip's tensorflow has CUDA support compiled in but loads CUDA and cuDNN from the nvidia-*
        # wheels of its and-cuda extra (or a CUDA base image's libraries).
        note = "an NVIDIA device is visible but the CUDA libraries are missing: install tensorflow[and-cuda] (Dockerfile target gpu)"
    else:
        note = "an NVIDIA device is visible but TensorFlow cannot use it (driver version? see TensorFlow's log)"
    return ComputeDevice(
        kind="CPU",
        name=_cpu_name(),
        compute_capability=None,
        gpus=0,
        precision=precision,
        embedding_batch_size=CPU_EMBEDDING_BATCH_SIZE,
        tensorflow=tf.__version__,
        built_with_cuda=built_with_cuda,
        note=note,
    )


def device_probe(*, timeout: float = 180.0) -> ComputeDevice:
    """device_detect() in a fresh Python process, so this one stays free of TensorFlow and CUDA (a
    Celery worker's main process forks its pool after this). Raises DeviceProbeError."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ml.devices"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    except subprocess.TimeoutExpired as exc:
        raise DeviceProbeError(f"Detecting the compute device took more than {timeout:.0f} s.") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DeviceProbeError(f"Detecting the compute device failed (exit {done.returncode}): {' | '.join(tail)}")
    return ComputeDevice.from_dict(json.loads(lines[-1]))


if __name__ == "__main__":
    print(json.dumps(device_detect().to_dict()))
