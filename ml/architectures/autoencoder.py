"""Convolutional autoencoder (seeds 000/001)."""

from __future__ import annotations

import numpy as np

from ml.architectures.base import Architecture, Built, CatalogueLabels, TrainingData
from ml.hparams import MAX_DIM, HParams


def _encoder_steps(image_size: int) -> list[int]:
    """Spatial sizes after each stride-2 conv ('same' padding), stopping at 2x2."""
    sizes, s = [], image_size
    while s > 2:
        s = (s + 1) // 2
        sizes.append(s)
    return sizes


def build_autoencoder(*, image_size: int, dim: int, base_filters: int = 16, max_filters: int = 512):
    """Seed 000/001's reverse-image-search autoencoder: stride-2 3x3 convs that halve the image and
    double the filters (16, 32, ... up to 512), a transposed-conv decoder back to the image, tanh
    output on inputs scaled to [-1, 1], trained with MSE and Adam. The seed's bottleneck (4x4x512 at
    256 px) is too wide for pgvector, so the last feature map is flattened and projected linearly to
    `dim` (<= 2000): that projection is the embedding.

    Returns (embedder, trainer): embedder outputs {"embedding"}; trainer maps an image to its
    reconstruction, in the input's [0, 255] scale, so the target is the input itself.
    """
    # Keras is imported when a model is built, so reading the registry (the admin does) needs no TensorFlow.
    import keras
    from keras import layers

    from ml.precision import OUTPUT_DTYPE

    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in [1, {MAX_DIM}]. Received: dim={dim!r}")
    if not isinstance(base_filters, int) or base_filters < 1:
        raise ValueError(f"base_filters must be a positive integer. Received: base_filters={base_filters!r}")
    steps = _encoder_steps(image_size)
    filters = [min(base_filters * 2**i, max_filters) for i in range(len(steps))]

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    embedding = layers.Dense(dim, name="embedding", dtype=OUTPUT_DTYPE)(x)
    embedder = keras.Model(inputs, {"embedding": embedding}, name="autoencoder_embedder")

    last = steps[-1]
    y = layers.Dense(last * last * filters[-1], activation="relu", name="dec_dense")(embedding)
    y = layers.Reshape((last, last, filters[-1]), name="dec_reshape")(y)
    for i, f in enumerate(reversed(filters[:-1])):
        y = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec{i + 1}")(y)
    y = layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh", name="dec_out")(y)
    out_size = last * 2 ** len(filters)
    crop = out_size - image_size
    if crop:
        y = layers.Cropping2D(((crop // 2, crop - crop // 2), (crop // 2, crop - crop // 2)), name="crop")(y)
    reconstruction = layers.Rescaling(127.5, offset=127.5, name="reconstruction", dtype=OUTPUT_DTYPE)(y)
    trainer = keras.Model(inputs, reconstruction, name="autoencoder")
    return embedder, trainer


class Autoencoder(Architecture):
    name = "autoencoder"
    title = "Convolutional autoencoder"
    summary = "Learns to redraw each image; similar items are images that look alike pixel by pixel (no labels used)."
    # Seeds 000/001 use Adam 0.01; 1e-3 is steadier with the linear bottleneck.
    defaults = dict(image_size=28, dim=256, batch_size=128, lr=1e-3, epochs=5, augment=False)
    target = "images"

    def build(self, hp: HParams, labels: CatalogueLabels) -> Built:
        import keras

        embedder, trainer = build_autoencoder(image_size=hp.image_size, dim=hp.dim)
        return Built(embedder, trainer, loss=keras.losses.MeanSquaredError())

    def training_data(self, hp, built, framed, labels, train_idx, seed) -> TrainingData:
        from ml.input import Augment, make_dataset

        ds = make_dataset(
            framed,
            "images",
            train_idx,
            batch_size=hp.batch_size,
            shuffle=True,
            augment=Augment("light" if hp.augment else None),
            seed=seed,
        )
        return TrainingData(ds, int(np.ceil(len(train_idx) / hp.batch_size)))


ARCHITECTURE = Autoencoder()
