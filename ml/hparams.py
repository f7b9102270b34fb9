"""Training hyperparameters: one dataclass, checked up front.

Each architecture's defaults and its own checks live in its file under ml/architectures/ (the
registry); what is checked here holds for every run.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ml.budget import parse as parse_budget

BACKBONES = ("vgg16", "mobilenet_v2", "resnet50")
MINING = ("semi-hard", "hard")
LR_SCHEDULES = ("constant", "cosine")
POSITIVES = ("product", "category")
# "auto": mixed_float16 on a GPU with tensor cores, mixed_bfloat16 where the CPU computes bfloat16
# natively, else float32 (ml.precision).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
MAX_DIM = 2000


@dataclass
class HParams:
    image_size: int = 28
    dim: int = 128
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    epochs: int = 8
    budget: str = ""  # "" trains `epochs` epochs; else steps ("20000steps"), wall time ("30m") or "auto" (ml.budget)
    seed: int = 1337
    variant: str = "cnn"
    margin: float = 0.2
    mining: str = "semi-hard"
    classes_per_batch: int = 8
    positives: str = "category"  # deep_ranking: what a positive is (another view of the product, or the category)
    triplet_weight: float = 1.0
    aux_weight: float = 0.0
    colour_weight: float = 0.0  # deep_ranking: weight of the colour head (colour groups from the photos, ml.colour)
    category_share: float = 0.0  # deep_ranking: how much category agreement counts in the vector (ml.layers.Compose)
    colour_share: float = 0.0  # and colour-group agreement
    item_colour_share: float = 0.0  # and the item's measured colours (ml.layers.ItemColours)
    width: int = 32  # deep_ranking: filters of the first block (the others double)
    l2: float = 1e-4
    hidden_units: int = 120
    augment: bool = True
    framing: bool = True  # crop to the item and normalise its background (ml.framing)
    # Learn where items are in busy photos (ml.localiser) from composites of the catalogue's cut-outs
    # (ml.scenes), trained after the embedder in the same run and saved with the version.
    localiser: bool = False  # on in the recommendation for photo catalogues (ml.architectures.recommend)
    localiser_steps: int = 3000  # batches of 32 composites
    # deep_ranking views: the share whose background becomes a procedural scene (wood, fabric, tiles,
    # noise) instead of a plain colour, so an item on a surface embeds near its packshot.
    scene_views: float = 0.0
    flip_average: bool = False  # embed an image and its mirror image, average (test-time augmentation)
    eval_fraction: float = 0.1
    precision: str = "auto"
    backbone: str | None = None
    backbone_weights: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HParams":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown hyperparameters. Received: {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "HParams":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "HParams":
        """Raise ValueError naming the first bad value; return self so calls chain."""
        _int_in("image_size", self.image_size, 8, 1024)
        _int_in("dim", self.dim, 1, MAX_DIM)
        _int_in("batch_size", self.batch_size, 2, 65536)
        _int_in("epochs", self.epochs, 1, 100000)
        _int_in("seed", self.seed, 0, 2**31 - 1)
        _int_in("classes_per_batch", self.classes_per_batch, 2, 100000)
        _int_in("hidden_units", self.hidden_units, 1, 100000)
        _int_in("width", self.width, 4, 1024)
        _int_in("localiser_steps", self.localiser_steps, 1, 1000000)
        _float_in("scene_views", self.scene_views, 0.0, 1.0)
        _float_in("lr", self.lr, 0.0, 10.0, low_open=True)
        _float_in("margin", self.margin, 0.0, 10.0)
        _float_in("triplet_weight", self.triplet_weight, 0.0, 1000.0)
        _float_in("aux_weight", self.aux_weight, 0.0, 1000.0)
        _float_in("colour_weight", self.colour_weight, 0.0, 1000.0)
        _float_in("category_share", self.category_share, 0.0, 0.45)
        _float_in("colour_share", self.colour_share, 0.0, 0.45)
        _float_in("item_colour_share", self.item_colour_share, 0.0, 0.45)
        _float_in("l2", self.l2, 0.0, 10.0)
        _float_in("eval_fraction", self.eval_fraction, 0.0, 0.9)
        for name in ("augment", "flip_average", "framing", "localiser"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool. Received: {name}={getattr(self, name)!r}")
        if not isinstance(self.budget, str):
            raise ValueError(
                f"budget must be a string (20000steps, 30m, auto) or empty. Received: budget={self.budget!r}"
            )
        parse_budget(self.budget)  # BudgetError (a ValueError) says what is wrong
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("mining", self.mining, MINING)
        _one_of("positives", self.positives, POSITIVES)
        if self.backbone is not None:
            _one_of("backbone", self.backbone, BACKBONES)
            if self.image_size < 32:
                raise ValueError(
                    f"Keras Applications backbones need image_size >= 32. Received: image_size={self.image_size}"
                )
            if not self.backbone_weights:
                raise ValueError(
                    f"backbone={self.backbone!r} needs ImageNet weights, and nothing is downloaded: pass a local "
                    "weights file (e.g. the Keras Applications .h5) as backbone_weights. Received: backbone_weights=None"
                )
            if not os.path.isfile(self.backbone_weights):
                raise ValueError(
                    f"backbone_weights is not a file. Received: backbone_weights={self.backbone_weights!r}"
                )
        return self


def _one_of(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")


def _int_in(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]. Received: {name}={value!r}")


def _float_in(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}]. Received: {name}={value!r}")
