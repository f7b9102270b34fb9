"""Classifiers whose penultimate layer is the embedding (seeds 002/003, plus a small CNN)."""

from __future__ import annotations

import keras
from keras import layers, ops

from ml.hparams import CLASSIFIER_VARIANTS, MAX_DIM
from ml.precision import OUTPUT_DTYPE


@keras.saving.register_keras_serializable(package="lookalike")
class L2Normalize(layers.Layer):
    """Scale each vector to unit length, so L2 distance ranks like cosine similarity."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = epsilon

    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=self.axis, keepdims=True), self.epsilon))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="lookalike")
class CosineLogits(layers.Layer):
    """logits = scale * cos(embedding, class centre) (NormFace): classes become directions,
    which is what L2 retrieval on the normalised embedding compares."""

    def __init__(self, units: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units must be >= 1. Received: units={units}")
        self.units = units
        self.scale = scale

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform"
        )

    def call(self, x):
        w = self.kernel / ops.sqrt(ops.maximum(ops.sum(ops.square(self.kernel), axis=0, keepdims=True), 1e-12))
        x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        return self.scale * ops.matmul(x, w)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


def _check(image_size: int, dim: int, num_classes: int) -> None:
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in [1, {MAX_DIM}]. Received: dim={dim!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}")


def conv_block(x, filters: int, name: str):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def build_classifier(
    *,
    image_size: int,
    dim: int,
    num_classes: int,
    variant: str = "cnn",
    hidden_units: int = 120,
    l2: float = 1e-4,
) -> keras.Model:
    """Embedding model with a category head: outputs {"embedding", "probabilities"}.

    softmax (seed 002): a linear map to the dim-d embedding, then linear logits; overall still a
    linear softmax classifier (of rank <= dim). mlp (seed 003): 2-layer ReLU net, `hidden_units`
    hidden units with L2 regularisation; the hidden layer is the embedding (dim is ignored).
    cnn: two BatchNorm conv blocks and a dense layer; the embedding is L2-normalised and the head is a
    cosine classifier, so the geometry training shapes is the one retrieval uses.
    """
    _check(image_size, dim, num_classes)
    if variant not in CLASSIFIER_VARIANTS:
        raise ValueError(f"variant must be one of {CLASSIFIER_VARIANTS}. Received: variant={variant!r}")
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
        embedding = layers.Dense(hidden_units, activation="relu", kernel_regularizer=reg, name="embedding",
                                 dtype=OUTPUT_DTYPE)(x)
        probs = layers.Dense(num_classes, activation="softmax", kernel_regularizer=reg, name="probabilities",
                             dtype=OUTPUT_DTYPE)(embedding)
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


def classifier_trainer(embedder: keras.Model) -> keras.Model:
    """Training view of a classifier: image -> class probabilities (sparse cross-entropy)."""
    return keras.Model(embedder.input, embedder.get_layer("probabilities").output, name=f"{embedder.name}_trainer")
