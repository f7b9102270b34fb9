"""Architecture registry: build(architecture, hparams) -> Built(embedder, trainer, losses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from ml.architectures.autoencoder import build_autoencoder
from ml.architectures.classifier import build_classifier, classifier_trainer
from ml.architectures.deep_ranking import build_deep_ranking
from ml.hparams import ARCHITECTURES, CLASSIFIER_VARIANTS, HParams
from ml.losses import TripletLoss
from ml.precision import dtype_policy, resolve

__all__ = ["ARCHITECTURES", "CLASSIFIER_VARIANTS", "Built", "build", "float32_embedder"]


@dataclass
class Built:
    """embedder: image [0, 255] -> {"embedding"[, "probabilities"]}; it is what gets saved.
    trainer: the model fit() runs, sharing the embedder's weights, with its compile arguments."""

    embedder: keras.Model
    trainer: keras.Model
    loss: Any
    metrics: Any = None
    loss_weights: Any = None
    target: str = "labels"  # "labels" or "images" (autoencoder reconstructs its input)
    has_classifier_head: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.embedder.get_layer("embedding").output.shape[-1])


def build(architecture: str, hparams: HParams, *, num_classes: int | None = None) -> Built:
    """Build the embedding and training models for `architecture` ("autoencoder", "deep_ranking",
    "classifier"); classifier (and deep_ranking's auxiliary head) need `num_classes`.
    Layers compute in hparams.precision (ml.precision); weights and outputs are float32."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: architecture={architecture!r}")
    hparams.validate(architecture)
    with dtype_policy(resolve(hparams.precision)):
        return _build(architecture, hparams, num_classes)


def float32_embedder(architecture: str, hparams: HParams, built: Built, *, num_classes: int | None = None) -> keras.Model:
    """`built.embedder` with float32 arithmetic throughout and the same weights: what gets exported,
    so embeddings do not depend on whether the indexing machine has bfloat16 hardware."""
    if resolve(hparams.precision) == "float32":
        return built.embedder
    exported = build(architecture, hparams.replace(precision="float32"), num_classes=num_classes).embedder
    exported.set_weights(built.embedder.get_weights())
    return exported


def _build(architecture: str, hparams: HParams, num_classes: int | None) -> Built:
    if architecture == "autoencoder":
        embedder, trainer = build_autoencoder(image_size=hparams.image_size, dim=hparams.dim)
        return Built(embedder, trainer, loss=keras.losses.MeanSquaredError(), target="images")
    if num_classes is None and (architecture == "classifier" or hparams.aux_weight > 0):
        raise ValueError(f"{architecture} needs the number of classes. Received: num_classes=None")
    if architecture == "classifier":
        embedder = build_classifier(
            image_size=hparams.image_size, dim=hparams.dim, num_classes=num_classes,
            variant=hparams.variant, hidden_units=hparams.hidden_units, l2=hparams.l2,
        )
        return Built(
            embedder, classifier_trainer(embedder), loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"], has_classifier_head=True,
        )
    head = hparams.aux_weight > 0
    embedder = build_deep_ranking(
        image_size=hparams.image_size, dim=hparams.dim, num_classes=num_classes if head else None,
        backbone=hparams.backbone, backbone_weights=hparams.backbone_weights,
    )
    triplet = TripletLoss(margin=hparams.margin, mining=hparams.mining)
    if not head:
        return Built(embedder, keras.Model(embedder.input, embedder.get_layer("embedding").output), loss=triplet)
    trainer = keras.Model(
        embedder.input,
        {"embedding": embedder.get_layer("embedding").output,
         "probabilities": embedder.get_layer("probabilities").output},
        name="deep_ranking_trainer",
    )
    return Built(
        embedder, trainer,
        loss={"embedding": triplet, "probabilities": keras.losses.SparseCategoricalCrossentropy()},
        loss_weights={"embedding": 1.0, "probabilities": hparams.aux_weight},
        metrics={"probabilities": ["accuracy"]}, has_classifier_head=True,
    )
