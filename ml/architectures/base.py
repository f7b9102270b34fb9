"""What every architecture describes about itself (one subclass per file, one registry for all).

An architecture states, in its own file: its name and what it is for, its hyperparameter defaults
(and variants), the checks only it needs, how it builds its Keras models, and what it trains on
(the dataset and targets, and how its holdout is split). Nothing here imports TensorFlow: the
admin form, the CLI and the model choices read the registry (ml.architectures.REGISTRY) without
it; `build` and `training_data` import it when they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.hparams import HParams

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from ml.input import FramedImages


@dataclass(frozen=True)
class CatalogueLabels:
    """What training knows of each image: its category and its product (indices from 0)."""

    categories: np.ndarray
    products: np.ndarray
    category_names: list[str]
    colours: np.ndarray | None = None  # colour group per image (ml.colour), for the architectures that learn it

    @property
    def n_products(self) -> int:
        return int(self.products.max()) + 1 if len(self.products) else 0


@dataclass
class Built:
    """embedder: image [0, 255] -> {"embedding"[, "probabilities"]}; it is what gets saved.
    trainer: the model fit() runs, sharing the embedder's weights, with its compile arguments."""

    embedder: keras.Model
    trainer: keras.Model
    loss: Any
    metrics: Any = None
    loss_weights: Any = None
    has_classifier_head: bool = False

    @property
    def dim(self) -> int:
        return int(self.embedder.get_layer("embedding").output.shape[-1])


@dataclass
class TrainingData:
    dataset: tf.data.Dataset
    steps_per_epoch: int


class Architecture:
    """Subclasses set the class attributes and override what differs."""

    name: str = ""
    title: str = ""
    summary: str = ""  # what it learns, for the admin
    defaults: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {}  # variant -> defaults on top (the classifier's)
    default_variant: str | None = None
    target: str = "labels"  # "labels", or "images" (reconstructs its input)

    def hparams(self, variant: str | None = None, **overrides: Any) -> HParams:
        """Defaults, the variant's on top, then `overrides`; checked."""
        values = dict(self.defaults)
        if self.variants:
            variant = variant or self.default_variant
            if variant not in self.variants:
                raise ValueError(f"variant must be one of {tuple(self.variants)}. Received: variant={variant!r}")
            values.update(self.variants[variant], variant=variant)
        elif variant:
            raise ValueError(f"{self.name} has no variants. Received: variant={variant!r}")
        return self.validate(HParams.from_dict({**values, **overrides}))

    def validate(self, hp: HParams) -> HParams:
        """The checks every run needs (HParams.validate), then this architecture's own."""
        if hp.backbone is not None:
            raise ValueError(
                f"A backbone is only used by deep_ranking. Received: backbone={hp.backbone!r} "
                f"with architecture={self.name!r}"
            )
        hp.validate()
        if self.variants and hp.variant not in self.variants:
            raise ValueError(f"variant must be one of {tuple(self.variants)}. Received: variant={hp.variant!r}")
        self.check(hp)
        return hp

    def check(self, hp: HParams) -> None:
        """Raise ValueError naming the first bad value for this architecture."""

    def build(self, hp: HParams, labels: CatalogueLabels) -> Built:
        raise NotImplementedError  # every architecture file overrides it

    def split(self, hp: HParams, labels: CatalogueLabels) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, holdout indices): whole products held out, so none is on both sides."""
        from ml.input import split_by_group  # TensorFlow loads with ml.input; callers are training

        return split_by_group(labels.products, hp.eval_fraction, hp.seed)

    def holdout_relevance(self, hp: HParams, labels: CatalogueLabels, eval_idx: np.ndarray) -> str:
        """What makes a holdout image relevant to a query: "category" or "product"."""
        return "category"

    def training_data(
        self, hp: HParams, built: Built, framed: FramedImages, labels: CatalogueLabels, train_idx: np.ndarray, seed: int
    ) -> TrainingData:
        raise NotImplementedError  # every architecture file overrides it

    def learns_colour(self, hp: HParams) -> bool:
        """Whether training needs colour groups (ml.colour) computed from the decoded images."""
        return False


@dataclass(frozen=True)
class Recommendation:
    """The architecture and input size that measure best on a kind of catalogue, and why."""

    architecture: str
    variant: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
