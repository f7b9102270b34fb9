"""Multi-scale deep-ranking network (seed 004)."""

from __future__ import annotations

import os

import keras
from keras import layers, ops

from ml.architectures.classifier import CosineLogits, L2Normalize, conv_block
from ml.hparams import BACKBONES, MAX_DIM
from ml.precision import OUTPUT_DTYPE

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="lookalike")
class ImageNetPreprocess(layers.Layer):
    """[0, 255] RGB -> what an ImageNet backbone expects ('caffe': BGR minus mean; 'tf': [-1, 1])."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf"):
            raise ValueError(f"mode must be 'caffe' or 'tf'. Received: mode={mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _backbone(name: str, weights: str | None, image_size: int):
    if not weights:
        raise ValueError(
            f"backbone={name!r} needs ImageNet weights, and this machine cannot download them: pass a "
            "local weights file as backbone_weights. Received: backbone_weights=None"
        )
    if not os.path.isfile(weights):
        raise ValueError(f"backbone_weights is not a file. Received: backbone_weights={weights!r}")
    apps = {
        "vgg16": (keras.applications.VGG16, "caffe"),
        "mobilenet_v2": (keras.applications.MobileNetV2, "tf"),
        "resnet50": (keras.applications.ResNet50, "caffe"),
    }
    factory, mode = apps[name]
    net = factory(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    return net, mode


def build_deep_ranking(
    *,
    image_size: int,
    dim: int,
    num_classes: int | None = None,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> keras.Model:
    """Seed 004's multi-scale network: a deep ConvNet branch for semantics plus two shallow conv
    branches on 2x and 4x downsampled input for coarse appearance, concatenated and projected to a
    `dim`-d L2-normalised embedding, trained with a triplet loss (ml.losses.TripletLoss).

    The deep branch is a from-scratch BatchNorm CNN, or, with `backbone` and a local ImageNet
    `backbone_weights` file, VGG16 / MobileNetV2 / ResNet50 from Keras Applications.
    With `num_classes`, an auxiliary cosine classifier head adds "probabilities" to the outputs.
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in [1, {MAX_DIM}]. Received: dim={dim!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2 or None. Received: num_classes={num_classes!r}")
    if backbone is not None and backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES} or None. Received: backbone={backbone!r}")
    if backbone is not None and image_size < 32:
        raise ValueError(f"Keras Applications backbones need image_size >= 32. Received: image_size={image_size}")

    inputs = keras.Input((image_size, image_size, 3), name="image")
    if backbone is None:
        x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        d = conv_block(x, 32, "deep1")
        d = conv_block(d, 64, "deep2")
        d = layers.Flatten(name="deep_flatten")(d)
        d = layers.Dropout(0.3, name="deep_dropout")(d)
    else:
        net, mode = _backbone(backbone, backbone_weights, image_size)
        x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        d = net(ImageNetPreprocess(mode, name="imagenet_preprocess")(inputs))
        d = layers.GlobalAveragePooling2D(name="deep_pool")(d)
    d = layers.Dense(dim, activation="relu", name="deep_dense")(d)

    shallow = []
    for factor, filters in ((2, 32), (4, 16)):
        s = layers.AveragePooling2D(factor, name=f"down{factor}")(x)
        s = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"shallow{factor}_conv")(s)
        s = layers.MaxPooling2D(2, name=f"shallow{factor}_pool")(s)
        shallow.append(layers.Flatten(name=f"shallow{factor}_flatten")(s))

    z = layers.Concatenate(name="concat")([d, *shallow])
    z = layers.Dense(dim, use_bias=False, name="projection")(z)
    z = layers.BatchNormalization(momentum=0.9, name="projection_bn", dtype=OUTPUT_DTYPE)(z)
    embedding = L2Normalize(name="embedding", dtype=OUTPUT_DTYPE)(z)
    outputs = {"embedding": embedding}
    if num_classes is not None:
        logits = CosineLogits(num_classes, name="logits", dtype=OUTPUT_DTYPE)(embedding)
        outputs["probabilities"] = layers.Softmax(name="probabilities", dtype=OUTPUT_DTYPE)(logits)
    return keras.Model(inputs, outputs, name="deep_ranking")
