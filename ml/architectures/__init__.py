"""The registry of architectures: one file each under ml/architectures/, a dict from name to it.

The admin form, the CLI's choices, the model choices and the benchmarks read REGISTRY; adding an
architecture means adding one file and one line here. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

from typing import Any

from ml.architectures import autoencoder, classifier, deep_ranking
from ml.architectures.base import Architecture, Built, CatalogueLabels, Recommendation, TrainingData
from ml.hparams import HParams

REGISTRY: dict[str, Architecture] = {
    a.name: a for a in (autoencoder.ARCHITECTURE, classifier.ARCHITECTURE, deep_ranking.ARCHITECTURE)
}
ARCHITECTURES = tuple(REGISTRY)
CLASSIFIER_VARIANTS = tuple(classifier.ARCHITECTURE.variants)
# What bench/retrieval.py (Fashion-MNIST) and bench/photos.py (colour photos) measured best on each
# kind of catalogue; `recommend` chooses between them from the catalogue itself.
DEFAULT_ARCHITECTURE = "classifier"
PHOTO_ARCHITECTURE = "deep_ranking"

__all__ = [
    "ARCHITECTURES",
    "CLASSIFIER_VARIANTS",
    "DEFAULT_ARCHITECTURE",
    "REGISTRY",
    "Architecture",
    "Built",
    "CatalogueLabels",
    "Recommendation",
    "TrainingData",
    "build",
    "defaults",
    "float32_embedder",
    "get",
    "recommend",
]


def get(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}. Received: architecture={name!r}") from None


def defaults(architecture: str, variant: str | None = None, **overrides: Any) -> HParams:
    """Checked hyperparameters: the architecture's defaults (and its variant's), then `overrides`."""
    return get(architecture).hparams(variant, **overrides)


def build(architecture: str, hparams: HParams, labels: CatalogueLabels) -> Built:
    """Build the embedding and training models. Layers compute in hparams.precision (ml.precision);
    weights and outputs are float32."""
    from ml.precision import dtype_policy, resolve  # TensorFlow, once a model is built

    spec = get(architecture)
    spec.validate(hparams)
    with dtype_policy(resolve(hparams.precision)):
        return spec.build(hparams, labels)


def float32_embedder(architecture: str, hparams: HParams, built: Built, labels: CatalogueLabels):
    """`built.embedder` with float32 arithmetic throughout and the same weights: what gets exported,
    so embeddings do not depend on whether the indexing machine has bfloat16 hardware."""
    from ml.precision import resolve

    if resolve(hparams.precision) == "float32":
        return built.embedder
    exported = build(architecture, hparams.replace(precision="float32"), labels).embedder
    exported.set_weights(built.embedder.get_weights())
    return exported


def recommend(*, images: int, products: int, median_side: float, grey_share: float) -> Recommendation:
    """The architecture that measures best on a catalogue like this one, and its input size.

    Small grey images, one per product (Fashion-MNIST-like): the category classifier at 28 px
    (bench/retrieval.py). Photos (colour, larger, often several per product): deep ranking on product
    identity at 64 px (bench/photos.py), within the 15-minute CPU training budget.
    """
    per_product = images / max(products, 1)
    if median_side <= 48 and grey_share >= 0.9:
        return Recommendation(
            DEFAULT_ARCHITECTURE,
            classifier.ARCHITECTURE.default_variant,
            {"image_size": 28},
            reason=f"small grey-scale images ({median_side:.0f} px, {per_product:.1f} per "
            "product): the category classifier measures best on such catalogues "
            "(bench/retrieval.py)",
        )
    size = 64 if median_side >= 64 else 48 if median_side >= 40 else 32
    return Recommendation(
        PHOTO_ARCHITECTURE,
        None,
        # The localiser finds the item in a shopper's busy photo (ml.localiser, ml.isolate).
        {"image_size": size, "localiser": True},
        reason=f"photos ({median_side:.0f} px, {100 * (1 - grey_share):.0f}% in colour, "
        f"{per_product:.1f} per product): deep ranking on product identity finds the "
        "same product and its look-alikes best, with a localiser for busy photos (bench/photos.py)",
    )
