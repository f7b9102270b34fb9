"""Multi-scale deep-ranking network (seed 004), trained on the catalogue's own structure.

Seed 004 builds triplets from category, colour and product id. Here the product id gives the
positives: another photo of the same product, or another augmented view of the same photo
(ml.augment: background, zoom, position, rotation, mirror, light; never hue, so colour keeps its
meaning). Negatives are other products, mined semi-hard inside P x K batches (P products x K views).
Two more signals train the same embedding: one proxy per product (a cosine classifier over product
ids, Proxy-NCA style, which converges fastest on small compute), and the category head, where the
catalogue has categories. With positives="category" it trains as the seed describes at category
level (triplets of categories plus the category head).
"""

from __future__ import annotations

import os

import numpy as np

from ml.architectures.base import Architecture, Built, CatalogueLabels, TrainingData
from ml.hparams import BACKBONES, MAX_DIM, HParams

VIEWS_PER_PRODUCT = 2  # K: views of each product in a batch (a product with one photo: two views of it)
HOLDOUT_MIN_PHOTOS = 3  # a product gives a holdout photo only if two stay in training


def _backbone(name: str, weights: str | None, image_size: int):
    import keras

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


# The measured-colour part of new versions: hue x brightness cells (ml.layers.ItemColours), which a
# shaded or differently lit photo keeps, where RGB cells split it (docs/benchmarks.md, "Photo catalogue").
ITEM_COLOURS = {"space": "hue", "hue_bins": 16}


def build_deep_ranking(
    *,
    image_size: int,
    dim: int,
    num_classes: int | None = None,
    num_products: int | None = None,
    num_colours: int | None = None,
    shares: tuple[float, float] = (0.0, 0.0),
    item_colour_share: float = 0.0,
    width: int = 32,
    backbone: str | None = None,
    backbone_weights: str | None = None,
):
    """Seed 004's multi-scale network: a deep ConvNet branch for shape and pattern plus a shallow
    branch on the downsampled input for colour and coarse appearance, concatenated and projected
    to a `dim`-d L2-normalised embedding.

    The deep branch is a from-scratch BatchNorm CNN (for inputs of 48 px or more: a stride-2 stem and
    three blocks of `width`, 2x and 4x filters, average- and max-pooled), or, with `backbone` and a
    local ImageNet `backbone_weights` file, VGG16 / MobileNetV2 / ResNet50 from Keras Applications.
    With `num_classes`, a cosine category head adds "probabilities" to the outputs; with
    `num_colours`, a colour-group head; with `num_products`, one proxy per product gives "instance"
    logits (training only). `shares` (category, colour): how much agreement of the two heads counts
    in the served vector (ml.layers.Compose); (0, 0) serves the instance embedding alone.
    `item_colour_share`: how much the item's measured colours (ml.layers.ItemColours, no weights)
    count in it (cells as ITEM_COLOURS says).

    Returns the embedder, or with num_products (embedder, trainer outputs).
    """
    # Keras is imported when a model is built, so reading the registry (the admin does) needs no TensorFlow.
    import keras
    from keras import layers

    from ml.layers import Compose, CosineLogits, ImageNetPreprocess, ItemColours, L2Normalize, conv_block
    from ml.precision import OUTPUT_DTYPE

    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8. Received: image_size={image_size!r}")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"dim must be an integer in [1, {MAX_DIM}]. Received: dim={dim!r}")
    for name, value in (("num_classes", num_classes), ("num_products", num_products), ("num_colours", num_colours)):
        if value is not None and (not isinstance(value, int) or value < 2):
            raise ValueError(f"{name} must be an integer >= 2 or None. Received: {name}={value!r}")
    if backbone is not None and backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES} or None. Received: backbone={backbone!r}")
    if backbone is not None and image_size < 32:
        raise ValueError(f"Keras Applications backbones need image_size >= 32. Received: image_size={image_size}")

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    if backbone is not None:
        net, mode = _backbone(backbone, backbone_weights, image_size)
        d = net(ImageNetPreprocess(mode, name="imagenet_preprocess")(inputs))
        d = layers.GlobalAveragePooling2D(name="deep_pool")(d)
    elif image_size >= 48:
        d = layers.Conv2D(width // 2, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
        d = layers.ReLU(name="stem_relu")(layers.BatchNormalization(momentum=0.9, name="stem_bn")(d))
        d = conv_block(d, width, "deep1", convs=1)
        d = conv_block(d, 2 * width, "deep2")
        d = conv_block(d, 4 * width, "deep3", pool=False)
        d = layers.Concatenate(name="deep_pool")(
            [layers.GlobalAveragePooling2D(name="deep_avg")(d), layers.GlobalMaxPooling2D(name="deep_max")(d)]
        )
    else:
        d = conv_block(x, width, "deep1")
        d = conv_block(d, 2 * width, "deep2")
        d = layers.Flatten(name="deep_flatten")(d)
        d = layers.Dropout(0.3, name="deep_dropout")(d)
    d = layers.Dense(dim, activation="relu", name="deep_dense")(d)

    # Shallow branch: the image as an 8x8 grid of mean colours, one conv, pooled: colour and layout.
    grid = max(1, image_size // 8)
    s = layers.AveragePooling2D(grid, name="shallow_down")(x)
    s = layers.Conv2D(32, 3, padding="same", activation="relu", name="shallow_conv")(s)
    s = layers.GlobalAveragePooling2D(name="shallow_pool")(s)

    z = layers.Concatenate(name="concat")([d, s])
    z = layers.Dense(dim, use_bias=False, name="projection")(z)
    z = layers.BatchNormalization(momentum=0.9, name="projection_bn", dtype=OUTPUT_DTYPE)(z)
    instance_embedding = L2Normalize(name="instance_embedding", dtype=OUTPUT_DTYPE)(z)
    train_outputs = {"instance_embedding": instance_embedding}
    parts, part_shares = [], []
    probabilities = None
    if num_classes is not None:
        logits = CosineLogits(num_classes, name="logits", dtype=OUTPUT_DTYPE)(instance_embedding)
        probabilities = layers.Softmax(name="probabilities", dtype=OUTPUT_DTYPE)(logits)
        train_outputs["probabilities"] = probabilities
        parts.append(("probabilities", probabilities))
        part_shares.append(shares[0])
    if num_colours is not None:
        colour_logits = CosineLogits(num_colours, name="colour_logits", dtype=OUTPUT_DTYPE)(instance_embedding)
        colours = layers.Softmax(name="colours", dtype=OUTPUT_DTYPE)(colour_logits)
        train_outputs["colours"] = colours
        parts.append(("colours", colours))
        part_shares.append(shares[1])
    if item_colour_share > 0:
        parts.append(("item_colours", ItemColours(name="item_colours", dtype=OUTPUT_DTYPE, **ITEM_COLOURS)(inputs)))
        part_shares.append(item_colour_share)
    if any(part_shares):
        names = ("instance_embedding", *(name for name, _ in parts))
        embedding = Compose(tuple(part_shares), names, name="embedding", dtype=OUTPUT_DTYPE)(
            [instance_embedding, *(tensor for _, tensor in parts)]
        )
    else:
        embedding = layers.Identity(name="embedding", dtype=OUTPUT_DTYPE)(instance_embedding)
    outputs = {"embedding": embedding}
    if probabilities is not None:
        outputs["probabilities"] = probabilities
    embedder = keras.Model(inputs, outputs, name="deep_ranking")
    if num_products is None:
        return embedder
    train_outputs["instance"] = CosineLogits(num_products, scale=24.0, name="instance", dtype=OUTPUT_DTYPE)(
        instance_embedding
    )
    return embedder, train_outputs


class DeepRanking(Architecture):
    name = "deep_ranking"
    title = "Deep ranking (triplets)"
    summary = (
        "Learns what makes each product look like itself (its other photos and augmented views that "
        "keep colour) plus its category; similar items share kind, colour and pattern. Best on photo "
        "catalogues (bench/photos.py)."
    )
    defaults = dict(
        image_size=64,
        dim=128,
        batch_size=128,
        lr=3e-3,
        epochs=100,
        margin=0.2,
        mining="semi-hard",
        positives="product",
        triplet_weight=0.0,
        aux_weight=1.0,
        colour_weight=1.0,
        category_share=0.3,
        colour_share=0.3,
        item_colour_share=0.05,
        width=48,
        augment=True,
    )

    def validate(self, hp: HParams) -> HParams:
        hp.validate()  # a backbone is this architecture's to use
        self.check(hp)
        return hp

    def check(self, hp: HParams) -> None:
        if hp.positives == "product":
            if hp.batch_size % VIEWS_PER_PRODUCT:
                raise ValueError(
                    f"batch_size must be even ({VIEWS_PER_PRODUCT} views per product). "
                    f"Received: batch_size={hp.batch_size}"
                )
            return
        if hp.batch_size % hp.classes_per_batch:
            raise ValueError(
                "batch_size must be a multiple of classes_per_batch (P classes x K images). "
                f"Received: batch_size={hp.batch_size}, classes_per_batch={hp.classes_per_batch}"
            )
        if hp.batch_size // hp.classes_per_batch < 2:
            raise ValueError(
                "Triplets need at least 2 images per class in a batch. "
                f"Received: batch_size={hp.batch_size}, classes_per_batch={hp.classes_per_batch}"
            )

    def build(self, hp: HParams, labels: CatalogueLabels) -> Built:
        import keras

        from ml.losses import TripletLoss

        by_product = hp.positives == "product"
        head = hp.aux_weight > 0
        colours = by_product and hp.colour_weight > 0 and labels.colours is not None
        made = build_deep_ranking(
            image_size=hp.image_size,
            dim=hp.dim,
            num_classes=len(labels.category_names) if head else None,
            num_products=max(2, labels.n_products) if by_product else None,
            num_colours=max(2, int(labels.colours.max()) + 1) if colours else None,
            shares=(hp.category_share if head else 0.0, hp.colour_share if colours else 0.0),
            item_colour_share=hp.item_colour_share,
            width=hp.width,
            backbone=hp.backbone,
            backbone_weights=hp.backbone_weights,
        )
        embedder, outputs = made if by_product else (made, {})
        if not by_product:
            outputs = {"instance_embedding": embedder.get_layer("instance_embedding").output}
            if head:
                outputs["probabilities"] = embedder.get_layer("probabilities").output
        sparse = keras.losses.SparseCategoricalCrossentropy
        losses = {"instance_embedding": TripletLoss(margin=hp.margin, mining=hp.mining)}
        weights = {"instance_embedding": hp.triplet_weight if by_product else 1.0}
        if "instance" in outputs:
            losses["instance"], weights["instance"] = sparse(from_logits=True), 1.0
        if "probabilities" in outputs:
            losses["probabilities"], weights["probabilities"] = sparse(), hp.aux_weight
        if "colours" in outputs:
            losses["colours"], weights["colours"] = sparse(), hp.colour_weight
        trainer = keras.Model(embedder.input, outputs, name="deep_ranking_trainer")
        return Built(
            embedder,
            trainer,
            loss=losses,
            loss_weights=weights,
            metrics={"probabilities": ["accuracy"]} if head else None,
            has_classifier_head=head,
        )

    def learns_colour(self, hp: HParams) -> bool:
        return hp.positives == "product" and hp.colour_weight > 0

    def split(self, hp: HParams, labels: CatalogueLabels) -> tuple[np.ndarray, np.ndarray]:
        """positives="product": whole products stay in training (they are the catalogue the model
        serves) and about eval_fraction of the products with 3 or more photos give one photo each to
        the holdout, whose figures then ask "does a new photo find its own product". Without such
        products (one photo each), or with positives="category", whole products are held out."""
        if hp.positives != "product" or hp.eval_fraction == 0:
            return super().split(hp, labels)
        ids, counts = np.unique(labels.products, return_counts=True)
        eligible = ids[counts >= HOLDOUT_MIN_PHOTOS]
        if len(eligible) == 0:
            return super().split(hp, labels)
        rng = np.random.default_rng(hp.seed)
        n = max(1, int(round(len(ids) * hp.eval_fraction)))
        chosen = rng.permutation(eligible)[: min(n, len(eligible))]
        holdout = []
        for product in np.sort(chosen):
            photos = np.flatnonzero(labels.products == product)
            holdout.append(int(photos[rng.integers(len(photos))]))
        is_eval = np.zeros(len(labels.products), bool)
        is_eval[holdout] = True
        return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)

    def holdout_relevance(self, hp: HParams, labels: CatalogueLabels, eval_idx: np.ndarray) -> str:
        train_products = set(labels.products[np.setdiff1d(np.arange(len(labels.products)), eval_idx)].tolist())
        own = all(p in train_products for p in labels.products[eval_idx].tolist())
        return "product" if hp.positives == "product" and own and len(eval_idx) else "category"

    def training_data(self, hp, built, framed, labels, train_idx, seed) -> TrainingData:
        from ml.augment import ViewAugment
        from ml.input import Augment, make_balanced_dataset

        if hp.positives == "product":
            augment = Augment(
                "views" if hp.augment else None,
                views=ViewAugment(scene_share=hp.scene_views),
                background=framed.background,
            )
            targets = {
                "instance_embedding": labels.products,
                "instance": labels.products,
                "probabilities": labels.categories,
            }
            if labels.colours is not None:
                targets["colours"] = labels.colours
            ds = make_balanced_dataset(
                framed,
                targets,
                labels.products,
                train_idx,
                classes_per_batch=hp.batch_size // VIEWS_PER_PRODUCT,
                per_class=VIEWS_PER_PRODUCT,
                augment=augment,
                seed=seed,
                min_per_class=1,
            )
            n_products = len(np.unique(labels.products[train_idx]))
            steps = max(1, int(np.ceil(n_products / (hp.batch_size // VIEWS_PER_PRODUCT))))
        else:
            ds = make_balanced_dataset(
                framed,
                {"instance_embedding": labels.categories, "probabilities": labels.categories},
                labels.categories,
                train_idx,
                classes_per_batch=hp.classes_per_batch,
                per_class=hp.batch_size // hp.classes_per_batch,
                augment=Augment("light" if hp.augment else None),
                seed=seed,
            )
            steps = max(1, len(train_idx) // hp.batch_size)
        keep = set(built.loss)
        return TrainingData(ds.map(lambda x, y: (x, {k: v for k, v in y.items() if k in keep})), steps)


ARCHITECTURE = DeepRanking()
