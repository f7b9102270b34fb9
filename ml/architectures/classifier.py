"""Classifiers whose penultimate layer is the embedding (seeds 002/003, plus a small CNN)."""

from __future__ import annotations

import numpy as np

from ml.architectures.base import Architecture, Built, CatalogueLabels, TrainingData
from ml.hparams import MAX_DIM, HParams

VARIANTS = ("softmax", "mlp", "cnn")


def _check(image_size: int, dim: int, num_classes: int) -> None:
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in [1, {MAX_DIM}]. Received: dim={dim!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")


def build_classifier(
    *, image_size: int, dim: int, num_classes: int, variant: str = "cnn", hidden_units: int = 120, l2: float = 1e-4
):
    """Embedding model with a category head: outputs {"embedding", "probabilities"}.

    softmax (seed 002): a linear map to the dim-d embedding, then linear logits; overall still a
    linear softmax classifier (of rank <= dim). mlp (seed 003): 2-layer ReLU net, `hidden_units`
    hidden units with L2 regularisation; the hidden layer is the embedding (dim is ignored).
    cnn: two BatchNorm conv blocks and a dense layer; the embedding is L2-normalised and the head is a
    cosine classifier, so the geometry training shapes is the one retrieval uses.
    """
    # Keras is imported when a model is built, so reading the registry (the admin does) needs no TensorFlow.
    import keras
    from keras import layers

    from ml.layers import CosineLogits, L2Normalize, conv_block
    from ml.precision import OUTPUT_DTYPE

    _check(image_size, dim, num_classes)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}. Received: variant={variant!r}")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if variant == "softmax":
        x = layers.Flatten(name="flatten")(x)
        embedding = layers.Dense(dim, name="embedding", dtype=OUTPUT_DTYPE)(x)
        probs = layers.Dense(num_classes, activation="softmax", name="probabilities", dtype=OUTPUT_DTYPE)(embedding)
    elif variant == "mlp":
        if not isinstance(hidden_units, int) or hidden_units < 1:
            raise ValueError(f"hidden_units must be a positive integer. Received: hidden_units={hidden_units!r}")
        reg = keras.regularizers.L2(l2)
        x = layers.Flatten(name="flatten")(x)
        embedding = layers.Dense(
            hidden_units, activation="relu", kernel_regularizer=reg, name="embedding", dtype=OUTPUT_DTYPE
        )(x)
        probs = layers.Dense(
            num_classes, activation="softmax", kernel_regularizer=reg, name="probabilities", dtype=OUTPUT_DTYPE
        )(embedding)
    else:
        x = conv_block(x, 32, "block1")
        x = conv_block(x, 64, "block2")
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
        x = layers.Dense(dim, use_bias=False, name="projection")(x)
        x = layers.BatchNormalization(momentum=0.9, name="projection_bn", dtype=OUTPUT_DTYPE)(x)
        embedding = L2Normalize(name="embedding", dtype=OUTPUT_DTYPE)(x)
        logits = CosineLogits(num_classes, name="logits", dtype=OUTPUT_DTYPE)(embedding)
        probs = layers.Softmax(name="probabilities", dtype=OUTPUT_DTYPE)(logits)
    return keras.Model(inputs, {"embedding": embedding, "probabilities": probs}, name=f"classifier_{variant}")


def classifier_trainer(embedder):
    """Training view of a classifier: image -> class probabilities (sparse cross-entropy)."""
    import keras

    return keras.Model(embedder.input, embedder.get_layer("probabilities").output, name=f"{embedder.name}_trainer")


class Classifier(Architecture):
    name = "classifier"
    title = "Classifier"
    summary = (
        "Learns the catalogue's categories; similar items are products of the same kind. Best on "
        "Fashion-MNIST-like catalogues (small, centred, one image per product)."
    )
    # bench/retrieval.py measured these on Fashion-MNIST (see its JSON for the figures).
    # framing=False: Fashion-MNIST-like images come framed by their dataset; on them the inputs (and so the
    # figures of bench/retrieval.py) stay exactly those measured before framing existed.
    defaults = dict(image_size=28, dim=128, batch_size=128, lr=2e-3, epochs=13, augment=False, framing=False)
    variants = {
        "cnn": {},
        # Seed 003: 2-layer ReLU net, 120 hidden units, L2, lr 0.001, batch 400.
        "mlp": dict(lr=1e-3, batch_size=400, epochs=10),
        "softmax": dict(lr=1e-3, batch_size=400, epochs=10),
    }
    default_variant = "cnn"

    def build(self, hp: HParams, labels: CatalogueLabels) -> Built:
        import keras

        embedder = build_classifier(
            image_size=hp.image_size,
            dim=hp.dim,
            num_classes=len(labels.category_names),
            variant=hp.variant,
            hidden_units=hp.hidden_units,
            l2=hp.l2,
        )
        return Built(
            embedder,
            classifier_trainer(embedder),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            has_classifier_head=True,
        )

    def training_data(self, hp, built, framed, labels, train_idx, seed) -> TrainingData:
        from ml.input import Augment, make_dataset

        ds = make_dataset(
            framed,
            {"probabilities": labels.categories},
            train_idx,
            batch_size=hp.batch_size,
            shuffle=True,
            augment=Augment("light" if hp.augment else None),
            seed=seed,
        )
        return TrainingData(ds.map(lambda x, y: (x, y["probabilities"])), int(np.ceil(len(train_idx) / hp.batch_size)))


ARCHITECTURE = Classifier()
