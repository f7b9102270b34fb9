"""The localiser: where the catalogue's kind of item is in a photo, learned from the catalogue alone.

No pretrained detector is available, but the catalogue's packshots give every item's mask for free
(ml.framing). ml.scenes pastes those cut-outs onto procedural scenes with props, shadows and camera
noise; a small fully convolutional network learns to mark item pixels in them (a saliency /
segmentation head at half the input resolution). At query time the photo is resized to the
network's input, each connected part of the thresholded mask is one item, and its box is scaled
back to the photo's pixels: several items give several boxes, none gives [].

Small and fast on a CPU (a few milliseconds for one photo). The network and its settings are saved
with the model version (ml.artifacts: localiser.keras, localiser.json) and loaded once per process
and version.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ml.scenes import SceneSpec, composite_batch, cutouts

if TYPE_CHECKING:
    import keras

INPUT_SIZE = 64  # the network sees the photo at 64 x 64 (items >= 0.2 of the frame are >= 13 px)
THRESHOLD = 0.5  # a pixel is item where the predicted probability is above this
MIN_BOX_SHARE = 0.004  # a part smaller than this share of the frame is a speck, not an item
MAX_BOXES = 5
NMS_IOU = 0.6  # a box overlapping a better one this much is the same item
MIN_CUTOUTS = 12  # fewer usable cut-outs than this: too small a catalogue to learn items from
MIN_DISTINCT = 0.02  # cut-outs whose mean colours and shapes spread less than this are too uniform
EVAL_SHARE = 0.15  # of the cut-outs, held out: the composites the figures are measured on
EVAL_COMPOSITES = 200
GOOD_IOU = 0.7
MIN_REFINED_SHARE = 0.02  # a closer look that marks less of its window than this found nothing: keep the box
# Measured on shopper photos of a 200-product catalogue (bench/photos.py): the share of boxes with
# IoU >= 0.7 went 0.39 (width 8, 600 steps, 1,200 composites) -> 0.63 (16, 3,000) -> 0.69 (16, 3,000,
# 3,000 composites); width 24 gave 0.65 at twice the time. Variety of scenes counts more than size.
WIDTH = 16
COMPOSITES = 3000


def build_localiser(*, input_size: int = INPUT_SIZE, width: int = WIDTH) -> "keras.Model":
    """A small encoder-decoder that maps RGB [input_size, input_size, 3] in [0, 255] to item logits
    [input_size / 2, input_size / 2, 1]: two stride-2 stages, dilated convolutions for context (an
    item is told from its surface by what surrounds it), one skip back to half resolution."""
    import keras
    from keras import layers

    if input_size % 4:
        raise ValueError(f"input_size must be a multiple of 4. Received: input_size={input_size}")
    if width < 4:
        raise ValueError(f"width must be at least 4. Received: width={width}")
    x_in = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(x_in)

    def conv(t, filters, stride=1, dilation=1):
        t = layers.Conv2D(filters, 3, strides=stride, dilation_rate=dilation, padding="same", use_bias=False)(t)
        t = layers.BatchNormalization()(t)
        return layers.ReLU()(t)

    half = conv(conv(x, width, 2), width)  # 1/2
    q = conv(conv(half, 2 * width, 2), 2 * width)  # 1/4
    for d in (2, 4, 8):
        q = layers.Add()([q, conv(q, 2 * width, dilation=d)])
    up = layers.UpSampling2D(2, interpolation="bilinear")(q)
    y = conv(layers.Concatenate()([up, half]), width)
    logits = layers.Conv2D(1, 1, name="item_logits")(y)
    return keras.Model(x_in, logits, name="localiser")


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """uint8 {0, 1} [n, s, s] -> float32 [n, size, size, 1] (area-averaged: soft edges)."""
    out = np.zeros((len(masks), size, size, 1), np.float32)
    for i, m in enumerate(masks):
        img = Image.fromarray((m * 255).astype(np.uint8), "L").resize((size, size), Image.Resampling.BOX)
        out[i, ..., 0] = np.asarray(img, np.float32) / 255.0
    return out


def _composites(items, n: int, seed: int, spec: SceneSpec, threads: int = 2):
    """n composites in chunks (each chunk its own seed, so the result does not depend on threads)."""
    chunk = 64
    seeds = [(seed, i) for i in range(0, n, chunk)]

    def one(s):
        start = s[1]
        return composite_batch(
            items, min(chunk, n - start), seed=int(np.random.SeedSequence(s).generate_state(1)[0]), spec=spec
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(one, seeds))
    images = np.concatenate([p[0] for p in parts])
    masks = np.concatenate([p[1] for p in parts])
    boxes = [b for p in parts for b in p[2]]
    return images, masks, boxes


def _loss(y_true, logits):
    """Binary cross-entropy plus soft Dice on the item mask (Dice keeps small items from being
    drowned by the surface's many pixels)."""
    import keras
    from keras import ops

    bce = keras.losses.binary_crossentropy(y_true, logits, from_logits=True)
    p = ops.sigmoid(logits)
    inter = ops.sum(p * y_true, axis=[1, 2, 3])
    union = ops.sum(p, axis=[1, 2, 3]) + ops.sum(y_true, axis=[1, 2, 3])
    dice = 1.0 - (2.0 * inter + 1.0) / (union + 1.0)
    return ops.mean(bce, axis=[1, 2]) + dice


def too_small(images: np.ndarray, masks: np.ndarray) -> str | None:
    """Why this catalogue cannot train a localiser (None when it can)."""
    items, _ = cutouts(images, masks)
    if len(items) < MIN_CUTOUTS:
        return (
            f"only {len(items)} of {len(images)} catalogue photos show an item on a plain background "
            f"(at least {MIN_CUTOUTS} are needed to learn items from)"
        )
    means = np.array(
        [
            np.concatenate(
                [
                    (c.rgb * c.mask[..., None]).sum((0, 1)) / max(c.mask.sum(), 1.0) / 255.0,
                    [c.mask.shape[0] / max(c.mask.shape[1], 1) / 4.0],
                ]
            )
            for c in items
        ]
    )
    if float(means.std(axis=0).max()) < MIN_DISTINCT:
        return "the catalogue's items are all alike (colour and shape), so there is nothing to tell from a surface"
    return None


def train_localiser(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    workdir: Path,
    seed: int,
    steps: int = 3000,
    composites: int = COMPOSITES,
    batch_size: int = 32,
    width: int = WIDTH,
    spec: SceneSpec | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train on composites of the catalogue's cut-outs (framed packshots `images` uint8 [n, s, s, 3]
    and masks [n, s, s]) and save it in `workdir`. Returns the figures for the version's metrics:
    {"localiser": {...}} when trained, or {"localiser": None, "localiser_skipped": reason}."""
    import keras
    import tensorflow as tf

    from ml.artifacts import localiser_save

    spec = spec or SceneSpec(size=INPUT_SIZE)
    reason = too_small(images, masks)
    if reason:
        return {"localiser": None, "localiser_skipped": reason}
    started = time.monotonic()
    items, _ = cutouts(images, masks)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n_eval = max(2, int(round(len(items) * EVAL_SHARE)))
    eval_items = [items[i] for i in order[:n_eval]]
    train_items = [items[i] for i in order[n_eval:]]
    x, y, _ = _composites(train_items, composites, seed, spec)
    y = _resize_masks(y, spec.size // 2)
    made = time.monotonic() - started

    keras.utils.set_random_seed(seed)
    model = build_localiser(input_size=spec.size, width=width)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=_loss)

    def turn(i, pair):  # mirror and quarter turns: free extra views of each composite
        image, mask = pair
        r = tf.random.stateless_uniform([2], seed=tf.stack([tf.constant(seed, tf.int64), i]), maxval=4, dtype=tf.int32)
        image, mask = tf.image.rot90(image, r[0]), tf.image.rot90(mask, r[0])
        mirror = r[1] >= 2
        return (
            tf.where(mirror, tf.image.flip_left_right(image), image),
            tf.where(mirror, tf.image.flip_left_right(mask), mask),
        )

    ds = (
        tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y))
        .shuffle(len(x), seed=seed)
        .repeat()
        .enumerate()
        .map(turn, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    epochs = 10 if steps >= 10 else 1  # ten progress points (and Keras logs) over the run
    history = model.fit(ds, steps_per_epoch=steps // epochs, epochs=epochs, verbose=verbose)
    fitted = time.monotonic() - started - made

    info = {"input_size": spec.size, "threshold": THRESHOLD, "width": width}
    figures = evaluate_localiser(model, info, eval_items, seed=seed + 1, spec=spec)
    localiser_save(model, Path(workdir), info)
    return {
        "localiser": {
            **figures,
            "train_cutouts": len(train_items),
            "eval_cutouts": len(eval_items),
            "composites": composites,
            "steps": steps,
            "final_loss": round(float(history.history["loss"][-1]), 4),
            "seconds": {
                "composites": round(made, 1),
                "fit": round(fitted, 1),
                "total": round(time.monotonic() - started, 1),
            },
        }
    }


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a[:4]
    bx, by, bw, bh = b[:4]
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def evaluate_localiser(model, info: dict, items, *, seed: int, spec: SceneSpec, n: int = EVAL_COMPOSITES) -> dict:
    """Box figures on composites of held-out cut-outs: the best box's IoU with the main item's box
    (mean, median, share >= 0.7), and how often some proposed box reaches 0.7."""
    x, _, boxes = _composites(items, n, seed, spec)
    probs = _predict(model, x.astype(np.float32))
    top, best, empty_right, n_empty = [], [], 0, 0
    for p, truth in zip(probs, boxes):
        found = boxes_from_probability(p, spec.size, spec.size, info["threshold"])
        if not truth:
            n_empty += 1
            empty_right += not found
            continue
        top.append(iou(found[0], truth[0]) if found else 0.0)
        best.append(max((iou(f, truth[0]) for f in found), default=0.0))
    top_a, best_a = np.array(top), np.array(best)
    return {
        "box_iou_mean": round(float(top_a.mean()), 4),
        "box_iou_median": round(float(np.median(top_a)), 4),
        "share_iou_0_7": round(float((top_a >= GOOD_IOU).mean()), 4),
        "any_box_share_iou_0_7": round(float((best_a >= GOOD_IOU).mean()), 4),
        "empty_scenes_right": f"{empty_right}/{n_empty}",
        "eval_composites": n,
    }


def _predict(model, x: np.ndarray) -> np.ndarray:
    """Item probabilities [n, s/2, s/2] for float32 images [n, s, s, 3], through a tf.function
    kept on the model (an eager call or predict() costs tens to hundreds of milliseconds of
    set-up for one photo; the traced call, a few)."""
    import tensorflow as tf

    fn = getattr(model, "_item_probabilities", None)
    if fn is None:
        fn = tf.function(lambda t: tf.sigmoid(model(t, training=False))[..., 0], reduce_retracing=True)
        model._item_probabilities = fn
    return np.concatenate([np.asarray(fn(tf.constant(x[i : i + 64]))) for i in range(0, len(x), 64)])


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels, count) of the 8-connected parts of a boolean mask (0 = background), by a
    breadth-first walk (the localiser's mask has about a thousand pixels)."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    count = 0
    todo = mask.copy()
    for start in zip(*np.nonzero(mask)):
        if not todo[start]:
            continue
        count += 1
        todo[start] = False
        queue = [start]
        while queue:
            y, x = queue.pop()
            labels[y, x] = count
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and todo[ny, nx]:
                        todo[ny, nx] = False
                        queue.append((ny, nx))
    return labels, count


def boxes_from_probability(
    prob: np.ndarray, width: int, height: int, threshold: float = THRESHOLD
) -> list[tuple[int, int, int, int, float]]:
    """(x, y, w, h, score) in pixels of a width x height photo, best first, from an item probability
    map: one box per connected part above threshold; score = the part's mean probability. Larger,
    surer parts first (their probability mass), specks dropped, overlapping boxes suppressed."""
    ph, pw = prob.shape
    labels, count = _components(prob > threshold)
    found = []
    for label in range(1, count + 1):
        part = labels == label
        if part.mean() < MIN_BOX_SHARE:
            continue
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        x0, x1 = cols[0] * width / pw, (cols[-1] + 1) * width / pw
        y0, y1 = rows[0] * height / ph, (rows[-1] + 1) * height / ph
        box = (int(round(x0)), int(round(y0)), max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0))))
        found.append((float(prob[part].sum()), box, float(prob[part].mean())))
    found.sort(key=lambda f: -f[0])
    kept: list[tuple[int, int, int, int, float]] = []
    for _, box, score in found:
        if all(iou(box, k) < NMS_IOU for k in kept):
            kept.append((*box, round(score, 4)))
        if len(kept) == MAX_BOXES:
            break
    return kept


def item_probability(model, info: dict, image: np.ndarray) -> np.ndarray:
    """The item probability map [s/2, s/2] over uint8 RGB image [H, W, 3] (stretched to the network's square)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be uint8 RGB [H, W, 3]. Received: shape={image.shape}")
    h, w = image.shape[:2]
    size = int(info["input_size"])
    img = Image.fromarray(image.astype(np.uint8, copy=False))
    if max(w, h) > 4 * size:
        img = img.reduce(max(1, min(w, h) // (2 * size)))  # cheap box-filter first, then the fine resize
    x = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.float32)[None]
    return _predict(model, x)[0]


def localise(model, info: dict, image: np.ndarray) -> list[tuple[int, int, int, int, float]]:
    """(x, y, w, h, score) boxes of the items in uint8 RGB image [H, W, 3], best first: found on the
    whole photo, then each one redrawn from a second look at a window around it (refine_box)."""
    prob = item_probability(model, info, image)
    h, w = np.shape(image)[:2]
    threshold = float(info.get("threshold", THRESHOLD))
    kept: list[tuple[int, int, int, int, float]] = []
    for *box, score in boxes_from_probability(prob, w, h, threshold):
        fine = refine_box(model, info, image, tuple(box), threshold)
        if all(iou(fine, k) < NMS_IOU for k in kept):  # two coarse boxes can be one item seen closer
            kept.append((*fine, score))
    return kept


def refine_box(model, info: dict, image: np.ndarray, box: tuple[int, int, int, int], threshold: float = THRESHOLD):
    """The box (x, y, w, h) redrawn from the localiser's look at a window around it (ml.isolate's
    context window): the item is larger in the network's input there, so its edges are found at a finer
    step than on the whole photo. Measured on shopper photos of a 1,000-product catalogue: box IoU >= 0.7
    on 64% of them from the whole photo, 70% redrawn (a second redraw adds under 1%). The window's
    largest part is the item; a window with next to nothing in it keeps the box as it was."""
    from ml.isolate import context_window

    height, width = np.shape(image)[:2]
    x0, y0, x1, y1 = context_window(box, width, height)
    prob = item_probability(model, info, np.asarray(image)[y0:y1, x0:x1])
    solid = prob > threshold
    if solid.mean() < MIN_REFINED_SHARE:
        return tuple(int(v) for v in box)
    labels, count = _components(solid)
    part = labels == 1 + int(np.argmax(np.bincount(labels[solid], minlength=count + 1)[1:]))
    rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
    sx, sy = (x1 - x0) / prob.shape[1], (y1 - y0) / prob.shape[0]
    left, top = x0 + int(round(cols[0] * sx)), y0 + int(round(rows[0] * sy))
    right, bottom = x0 + int(round((cols[-1] + 1) * sx)), y0 + int(round((rows[-1] + 1) * sy))
    return left, top, max(1, right - left), max(1, bottom - top)


_cache: dict[tuple, tuple[Any, dict]] = {}
_cache_lock = threading.Lock()


def _load(workdir: Path):
    from ml.artifacts import localiser_load, localiser_paths

    model_path, _ = localiser_paths(workdir)
    key = (str(workdir), model_path.stat().st_mtime_ns if model_path.exists() else None)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = localiser_load(workdir)
        return _cache[key]


def localiser_boxes(version, image: np.ndarray) -> list:
    """The items in uint8 RGB image [H, W, 3] as ml.proposals.Box (pixels of that image), best
    first; [] when none is found. The version's localiser is loaded once per process."""
    from ml.proposals import MARGIN, Box

    model, info = _load(Path(version.workdir))
    height, width = np.shape(image)[:2]
    boxes = []
    for x, y, w, h, s in localise(model, info, image):
        # The classical proposer's margin: a band of the surface around the item, so the box holds all of it.
        mx, my = max(1, round(MARGIN * w)), max(1, round(MARGIN * h))
        x0, y0 = max(0, x - mx), max(0, y - my)
        x1, y1 = min(width, x + w + mx), min(height, y + h + my)
        boxes.append(Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0, score=s))
    return boxes


def localiser_isolate(version, image: np.ndarray, box: tuple[int, int, int, int], background) -> np.ndarray | None:
    """The box of uint8 RGB `image` with its surface replaced by `background` (ml.isolate), or None
    when the version's localiser finds no item in it."""
    from ml.isolate import isolate

    model, info = _load(Path(version.workdir))
    found = isolate(image, box, lambda window: item_probability(model, info, window), background)
    return None if found is None else found.image
