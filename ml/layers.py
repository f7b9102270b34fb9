"""Custom Keras layers the architectures share; registered so saved models load (ml.inference)."""

from __future__ import annotations

import keras
from keras import layers, ops

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# ItemColours: a pixel's weight rises from 0 to 1 over this many levels beyond `threshold` from the
# background, so anti-aliased edges and JPEG noise count a little rather than flipping in or out.
_FOREGROUND_RAMP = 20.0
# ItemColours (space="hue"): a pixel goes from grey to fully coloured over this many levels of chroma
# beyond `chroma`, since the hue of a near-grey pixel is mostly noise.
_CHROMA_RAMP = 32.0
# ItemColours configs saved before the colour space was configurable have none of these keys; they
# were rgb cells (the hue arguments then unused), and load as such.
_ITEM_COLOURS_BEFORE_SPACES = {"space": "rgb", "hue_bins": 12, "value_bins": 3, "grey_bins": 6, "chroma": 16.0}


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
    which is what L2 retrieval on the normalised embedding compares. With one class per product
    the centres are proxies (Proxy-NCA style instance learning)."""

    def __init__(self, units: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units must be >= 1. Received: units={units}")
        self.units = units
        self.scale = scale

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, x):
        w = self.kernel / ops.sqrt(ops.maximum(ops.sum(ops.square(self.kernel), axis=0, keepdims=True), 1e-12))
        x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        return self.scale * ops.matmul(x, w)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


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


def conv_block(x, filters: int, name: str, *, convs: int = 2, pool: bool = True):
    """convs x (3x3 conv, BatchNorm, ReLU), then 2x2 max pooling."""
    for i in range(1, convs + 1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x) if pool else x


@keras.saving.register_keras_serializable(package="lookalike")
class ItemColours(layers.Layer):
    """The colours an item shows, measured, not learned: a distribution over colour cells of the
    pixels of a framed image [n, s, s, 3] (0-255) that differ from its background.

    The background is the median of the image's outer ring (framing pads every item with a margin
    of the catalogue's background colour); a pixel counts fully from `threshold` + _FOREGROUND_RAMP levels away
    from it, not at all within `threshold`. Cells are soft (each pixel shares its count between
    the nearest cell centres, as ml.colour does), and the image is first average-pooled by `pool`,
    so the layer is cheap beside the network. Served as a part of the vector (Compose,
    `item_colour_share`), it lets similar items rank by the colour a product's photos show where the
    learned colour groups only say which cluster it is in. No weights.

    space="rgb": bins^3 cells of the RGB cube. space="hue" (the default): cells of
    hue (`hue_bins` round the colour wheel) x brightness (`value_bins` of max(r, g, b)) for the
    coloured pixels, and `grey_bins` of brightness for the grey ones, a pixel sharing itself between
    the two by its chroma (max - min: fully coloured from `chroma` + _CHROMA_RAMP levels, grey below `chroma`).
    Shading, folds and light of another strength scale a pixel's channels together, which keeps its
    hue and moves it across the RGB cube's cells: a shaded yellow lands in an orange's RGB cell but
    keeps a yellow's hue.

    get_config records every argument, so a saved layer keeps its own cells whatever the defaults;
    a config saved before `space` existed loads as the rgb cells it was."""

    SPACES = ("rgb", "hue")

    def __init__(
        self,
        bins: int = 4,
        pool: int = 2,
        threshold: float = 12.0,
        space: str = "hue",
        hue_bins: int = 16,
        value_bins: int = 3,
        grey_bins: int = 6,
        chroma: float = 16.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if space not in self.SPACES:
            raise ValueError(f"space must be one of {self.SPACES}. Received: space={space!r}")
        if min(bins, hue_bins, value_bins, grey_bins) < 2 or pool < 1:
            raise ValueError(
                f"bins, hue_bins, value_bins and grey_bins must be >= 2 and pool >= 1. Received: "
                f"bins={bins}, hue_bins={hue_bins}, value_bins={value_bins}, grey_bins={grey_bins}, "
                f"pool={pool}"
            )
        self.bins, self.pool, self.threshold, self.space = int(bins), int(pool), float(threshold), space
        self.hue_bins, self.value_bins, self.grey_bins = int(hue_bins), int(value_bins), int(grey_bins)
        self.chroma = float(chroma)

    @property
    def size(self) -> int:
        if self.space == "rgb":
            return self.bins**3
        return self.hue_bins * self.value_bins + self.grey_bins

    @staticmethod
    def _soft(at, bins: int, circular: bool = False):
        """[..., bins]: each value (in cell units) shared between its two nearest cell centres."""
        centres = ops.arange(bins, dtype="float32")
        if circular:
            distance = ops.abs(at[..., None] - centres)
            distance = ops.minimum(distance, bins - distance)
        else:
            distance = ops.abs(ops.clip(at, 0.0, bins - 1.0)[..., None] - centres)
        return ops.relu(1.0 - distance)

    def call(self, images):
        x = ops.cast(images, "float32")
        if self.pool > 1:
            x = ops.average_pool(x, self.pool, self.pool, padding="valid")
        ring = ops.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)  # [n, border, 3]
        background = ops.sort(ring, axis=1)[:, ring.shape[1] // 2]  # the median, per channel
        distance = ops.max(ops.abs(x - background[:, None, None, :]), axis=-1)
        weight = (
            ops.clip((distance - self.threshold) / _FOREGROUND_RAMP, 0.0, 1.0) + 1e-3
        )  # an empty item: the whole image
        counts = self._rgb(x, weight) if self.space == "rgb" else self._hue(x, weight)
        return counts / ops.sum(counts, axis=-1, keepdims=True)

    def _rgb(self, x, weight):
        share = self._soft(x * (self.bins / 256.0) - 0.5, self.bins)  # [n, h, w, 3, bins]
        red = share[..., 0, :] * weight[..., None]
        counts = ops.einsum("nhwi,nhwj,nhwk->nijk", red, share[..., 1, :], share[..., 2, :])
        return ops.reshape(counts, (-1, self.bins**3))

    def _hue(self, x, weight):
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        top, bottom = ops.max(x, axis=-1), ops.min(x, axis=-1)
        chroma = top - bottom
        safe = ops.maximum(chroma, 1e-3)
        from_red = (g - b) / safe
        hue = ops.where(
            top == r,
            ops.where(from_red < 0, from_red + 6.0, from_red),
            ops.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
        )  # [0, 6)
        coloured = ops.clip((chroma - self.chroma) / _CHROMA_RAMP, 0.0, 1.0)
        hues = self._soft(hue * (self.hue_bins / 6.0), self.hue_bins, circular=True)
        values = self._soft(top * (self.value_bins / 256.0) - 0.5, self.value_bins)
        greys = self._soft(top * (self.grey_bins / 256.0) - 0.5, self.grey_bins)
        chromatic = ops.einsum("nhwi,nhwj->nij", hues * (weight * coloured)[..., None], values)
        grey = ops.sum(greys * (weight * (1.0 - coloured))[..., None], axis=(1, 2))
        return ops.concatenate([ops.reshape(chromatic, (-1, self.hue_bins * self.value_bins)), grey], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size)

    def get_config(self):
        return {
            **super().get_config(),
            "bins": self.bins,
            "pool": self.pool,
            "threshold": self.threshold,
            "space": self.space,
            "hue_bins": self.hue_bins,
            "value_bins": self.value_bins,
            "grey_bins": self.grey_bins,
            "chroma": self.chroma,
        }

    @classmethod
    def from_config(cls, config):
        if "space" not in config:
            config = {**_ITEM_COLOURS_BEFORE_SPACES, **config}
        return cls(**config)


@keras.saving.register_keras_serializable(package="lookalike")
class Compose(layers.Layer):
    """One unit vector from an instance embedding and class probabilities:
    [sqrt(1 - sum(shares)) * e, sqrt(share_1) * sqrt(p_1), ...]. Each probability part is in
    Hellinger geometry (sqrt of a distribution is a unit vector), so a squared L2 distance is the
    instance distance plus, per part, share * the Hellinger distance between the two distributions:
    products of another category (or colour group) are pushed away by up to 2 * share, products of
    the same one are ranked by the instance part. `names`: the parts' names in input order (the
    instance embedding's first), recorded for vector_parts; empty in models saved without them."""

    def __init__(self, shares: tuple[float, ...] = (), names: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.shares = tuple(float(s) for s in shares)
        self.names = tuple(str(n) for n in names)
        if any(s < 0 for s in self.shares) or sum(self.shares) >= 1:
            raise ValueError(f"shares must be >= 0 and sum to less than 1. Received: shares={self.shares}")
        if self.names and len(self.names) != len(self.shares) + 1:
            raise ValueError(
                f"names must name the instance embedding and each share's part. Received: "
                f"names={self.names}, shares={self.shares}"
            )

    def call(self, inputs):
        embedding, *distributions = inputs
        parts = [embedding * (1.0 - sum(self.shares)) ** 0.5]
        for share, p in zip(self.shares, distributions, strict=True):
            parts.append(ops.sqrt(ops.maximum(p, 0.0)) * share**0.5)
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shapes):
        return (*input_shapes[0][:-1], sum(s[-1] for s in input_shapes))

    def get_config(self):
        return {**super().get_config(), "shares": list(self.shares), "names": list(self.names)}


def vector_parts(model: keras.Model) -> list[dict] | None:
    """The layout of a model's served vector when a Compose layer named "embedding" made it:
    [{"name": the part's source layer, "size": its width, "share": its squared weight}, ...] in
    vector order (search.queries.weights weighs them per use); None for a vector of one part, or
    for a Compose layer that was not given its parts' names."""
    try:
        layer = model.get_layer("embedding")
    except ValueError:
        return None
    if not isinstance(layer, Compose) or not layer.names:
        return None
    sources = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    shares = [1.0 - sum(layer.shares), *layer.shares]
    return [
        {"name": name, "size": int(tensor.shape[-1]), "share": round(float(s), 6)}
        for name, tensor, s in zip(layer.names, sources, shares, strict=True)
    ]
