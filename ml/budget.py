"""A training budget: how much a run may cost, in optimizer steps or wall time, instead of epochs.

An epoch is one pass over every photo, so its cost grows with the catalogue; a budget does not.
Each step samples its products, a photo of each and augmented views of them (ml.input's balanced
batches), so a run needs enough steps for the model to see enough products, not every photo a
hundred times. Forms:

    20000steps   that many optimizer steps
    30m, 2h, 90s wall time of the training itself (decoding the photos once is not counted)
    auto         AUTO_STEPS_AT_1K steps at 1,000 products, growing with the square root of the
                 number of products (twice the steps for four times the catalogue)

Nothing here imports TensorFlow: the form, the CLI and the hyperparameter checks read it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# What today's default costs at 1,000 products (100 epochs of ceil(1000 / 64) steps), and so what
# "auto" spends there; it grows with the square root of the products from there.
AUTO_STEPS_AT_1K = 1600
AUTO_MIN_STEPS, AUTO_MAX_STEPS = 400, 60000
# A budget below these cannot train a model worth serving: the embedding barely leaves its random
# start (the first hundred steps move the loss most), or each product is seen less than twice.
MIN_STEPS = 100
MIN_SECONDS = 60
MIN_PASSES = 2.0
CHUNK_STEPS = 250  # steps between checkpoints (a budget run's "epoch"): a killed run loses at most this

_FORM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(steps?|s|m|min|h)\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600}


class BudgetError(ValueError):
    """A budget that cannot be read, or too small to train anything; str(exc) says which."""


@dataclass(frozen=True)
class Budget:
    kind: str  # "steps", "seconds" or "auto"
    value: float  # steps or seconds; 0 for auto
    text: str  # as given, normalised ("20000steps", "30m", "auto")

    def steps(self, products: int) -> int | None:
        """Optimizer steps for a catalogue of `products` training products; None for a wall-time budget."""
        if self.kind == "steps":
            return int(self.value)
        if self.kind == "auto":
            return auto_steps(products)
        return None

    def to_dict(self, products: int | None = None) -> dict:
        out = {"text": self.text, "kind": self.kind, "value": self.value}
        if products is not None and self.steps(products) is not None:
            out["steps"] = self.steps(products)
        return out


def auto_steps(products: int) -> int:
    """The "auto" budget's steps for `products` training products (sublinear: square root)."""
    steps = AUTO_STEPS_AT_1K * math.sqrt(max(products, 1) / 1000.0)
    return int(min(max(round(steps), AUTO_MIN_STEPS), AUTO_MAX_STEPS))


def parse(text: str | None) -> Budget | None:
    """The Budget `text` describes; None for "" / None (train by epochs). Raises BudgetError."""
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip().lower()
    if raw == "auto":
        return Budget("auto", 0.0, "auto")
    match = _FORM.match(raw)
    if not match:
        raise BudgetError(
            f"budget must be a number of steps (20000steps), a wall time (90s, 30m, 2h) or auto. Received: budget={text!r}"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit.startswith("step"):
        if number != int(number):
            raise BudgetError(f"A step budget must be a whole number of steps. Received: budget={text!r}")
        budget = Budget("steps", float(int(number)), f"{int(number)}steps")
        if budget.value < MIN_STEPS:
            raise BudgetError(
                f"A budget of {int(number)} steps is too small to learn anything: give at least "
                f"{MIN_STEPS} steps. Received: budget={text!r}"
            )
        return budget
    seconds = number * _SECONDS[unit]
    if seconds < MIN_SECONDS:
        raise BudgetError(
            f"A budget of {seconds:g} s is too small to learn anything: give at least {MIN_SECONDS} s "
            f"(1m). Received: budget={text!r}"
        )
    return Budget("seconds", seconds, f"{number:g}{unit}")


def check_for_catalogue(budget: Budget | None, products: int, products_per_step: int) -> None:
    """Raise BudgetError when a step budget cannot show each of `products` training products at
    least MIN_PASSES times (products_per_step of them per step)."""
    if budget is None or products < 1:
        return
    steps = budget.steps(products)
    if steps is None:
        return
    needed = math.ceil(MIN_PASSES * products / max(products_per_step, 1))
    if steps < needed:
        raise BudgetError(
            f"A budget of {steps} steps shows each of the {products} products {steps * products_per_step / products:.1f} "
            f"times, too few to learn them: give at least {needed} steps (each product {MIN_PASSES:g} times), or auto "
            f"({auto_steps(products)} steps here). Received: budget={budget.text!r}"
        )


def plan(budget: Budget, products: int, steps_per_pass: int) -> tuple[int, int]:
    """(steps per checkpoint chunk, planned steps, a whole number of chunks) for a budget run: a chunk
    is one pass over the products, at most CHUNK_STEPS. A wall-time budget's planned steps are a first
    estimate (the auto budget's), which training re-plans from the measured step time."""
    chunk = max(1, min(CHUNK_STEPS, steps_per_pass))
    steps = budget.steps(products)
    if steps is None:
        steps = auto_steps(products)
    chunk = min(chunk, steps)
    return chunk, math.ceil(steps / chunk) * chunk


DISK_MARGIN_BYTES = 512 * 2**20  # checkpoints, the exported model and TensorBoard logs beside the cache


def cache_bytes(images: int, image_size: int) -> int:
    """Bytes of training's decode-once cache (ml.input): uint8 RGB plus a uint8 item mask per image."""
    return images * image_size * image_size * 4


def check_disk(images: int, image_size: int, in_memory_bytes: int, folder: str | os.PathLike) -> None:
    """Raise BudgetError when the decode-once cache of `images` photos at `image_size` px would be
    memory-mapped (larger than in_memory_bytes) under `folder` and will not fit its free space."""
    need = cache_bytes(images, image_size)
    if need <= in_memory_bytes:
        return
    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:  # the models folder may not exist yet
        path = path.parent
    free = shutil.disk_usage(path).free
    if need + DISK_MARGIN_BYTES > free:
        raise BudgetError(
            f"Training {images} images at {image_size} px caches {need / 2**30:.1f} GiB of decoded images under "
            f"{folder}, which has {free / 2**30:.1f} GiB free (and {DISK_MARGIN_BYTES // 2**20} MiB more is needed "
            "for checkpoints): free some space, move MODELS_ROOT, or lower image_size."
        )
