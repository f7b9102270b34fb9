"""Training: build, fit with a checkpoint every epoch (resuming from it), log, export.

A workdir holds everything about one run; ml/artifacts.py owns its layout (checkpoint, state,
TensorBoard logs, the exported embedder and its meta.json).
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from ml import budget as budgets
from ml.architectures import CatalogueLabels, build, float32_embedder, get
from ml.artifacts import CHECKPOINT, TENSORBOARD, checkpoint_save, embedder_save, state_read
from ml.colour import product_colours
from ml.framing import Framing, catalogue_framing
from ml.hparams import HParams
from ml.input import FramedImages, decode_once
from ml.layers import vector_parts
from ml.metrics import retrieval_metrics
from ml.precision import resolve
from ml.preprocess import decode, to_rgb

PROJECTOR_SAMPLE = 500
TIME_BUDGET_EPOCHS = 10**6  # a wall-time budget's fit() runs until the budget callback stops it


@dataclass
class TrainResult:
    workdir: Path
    completed: bool  # False when a callback stopped training before the last epoch
    epochs_completed: int
    initial_epoch: int  # > 0 when this call resumed from a checkpoint
    history: dict[str, list[float]]
    train_seconds: float  # over all calls on this workdir
    dim: int
    embedder_path: Path | None = None
    meta_path: Path | None = None
    eval_metrics: dict[str, Any] | None = field(default=None)  # holdout figures
    failures: dict[int, str] = field(default_factory=dict)  # image index -> why it could not be decoded
    holdout: dict[str, Any] = field(default_factory=dict)  # {"relevance", "indices"}: what eval figures used
    vector_parts: list[dict] | None = None  # the served vector's parts (ml.layers.vector_parts), if several
    localiser: dict[str, Any] = field(default_factory=dict)  # {"localiser": figures or None, ...} (ml.localiser)
    peak_rss_bytes: int = 0  # the training process's peak resident memory, when training returned
    steps_done: int = 0  # optimizer steps over all calls on this workdir
    budget: dict | None = None  # a budget run's budget and how much of it was used (ml.budget)


def train(
    *,
    architecture: str,
    hparams: HParams | dict[str, Any],
    labels: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
    workdir: str | os.PathLike,
    paths: Sequence[str | os.PathLike] | None = None,
    images: np.ndarray | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 0,
    progress: Any = None,
    in_memory_bytes: int | None = None,
) -> TrainResult:
    """Train `architecture` on image files (`paths`) or in-memory uint8 `images` [n, h, w(, c)].

    labels: category index per image, into label_names. groups: product id per image (several
    photos of one product share it; the holdout split and instance training use it); default: each
    image its own product. Every image is decoded and framed once (ml.input.decode_once) with the
    catalogue's framing (ml.framing.catalogue_framing), which the exported model keeps in its
    metadata so indexing and photo search frame the same way. A file that cannot be decoded is
    left out with its reason (TrainResult.failures).
    callbacks: extra Keras callbacks (progress, cancellation via model.stop_training); they get
    batch- and epoch-level hooks. progress(done, total): decoding progress. If `workdir` holds a
    checkpoint of the same run, training resumes after its last complete epoch; raising
    hparams.epochs there continues a finished run. in_memory_bytes: a decode-once cache larger than
    this is memory-mapped from the workdir (default ml.input.IN_MEMORY_BYTES).
    """
    spec = get(architecture)
    hp = HParams.from_dict(hparams) if isinstance(hparams, dict) else hparams
    spec.validate(hp)
    if (paths is None) == (images is None):
        raise ValueError("Pass exactly one of paths (image files) or images (an array).")
    if images is not None:
        images = np.asarray(images)
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
            raise ValueError(f"images must be [n, h, w] or [n, h, w, 1|3]. Received: shape={images.shape}")
        source: Any = images
    else:
        source = [os.fspath(p) for p in paths]
    n = len(source)
    labels = np.asarray(labels, np.int64).reshape(-1)
    label_names = [str(name) for name in label_names]
    if len(labels) != n:
        raise ValueError(f"Need one label per image. Received: {len(labels)} labels for {n} images")
    if n < 2:
        raise ValueError(f"Need at least 2 images. Received: {n}")
    if len(label_names) < 2 or labels.min() < 0 or labels.max() >= len(label_names):
        raise ValueError(
            f"labels must index label_names (at least 2 names). Received: labels in "
            f"[{labels.min()}, {labels.max()}] with {len(label_names)} label_names"
        )
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"Need one group per image. Received: {len(groups)} groups for {n} images")
    _, products = np.unique(groups, return_inverse=True)
    catalogue = CatalogueLabels(
        categories=labels, products=products.reshape(-1).astype(np.int64), category_names=label_names
    )

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = _read_state(workdir, architecture, hp)
    initial_epoch = state["epoch"] if state else 0

    framing = Framing.from_dict(state["framing"]) if state and "framing" in state else _framing(hp, source)
    framed = decode_once(
        source,
        image_size=hp.image_size,
        framing=framing,
        cache_dir=workdir / "cache",
        progress=progress,
        in_memory_bytes=in_memory_bytes,
    )
    usable = framed.usable
    if usable.sum() < 2:
        raise ValueError(
            f"Only {int(usable.sum())} of {n} images could be decoded, e.g. {next(iter(framed.failures.values()), '')}"
        )

    if spec.learns_colour(hp):
        colours = product_colours(framed.images, framed.masks, catalogue.products, usable, seed=hp.seed)
        catalogue = dataclasses.replace(catalogue, colours=colours)
    keras.utils.set_random_seed(hp.seed + initial_epoch)
    built = build(architecture, hp, catalogue)
    train_idx, eval_idx = spec.split(hp, catalogue)
    train_idx, eval_idx = train_idx[usable[train_idx]], eval_idx[usable[eval_idx]]
    if len(train_idx) < 2:
        raise ValueError(f"The split left {len(train_idx)} training images; lower eval_fraction.")
    data = spec.training_data(hp, built, framed, catalogue, train_idx, seed=hp.seed + initial_epoch)
    steps, epochs = data.steps_per_epoch, hp.epochs
    budget = budgets.parse(hp.budget)
    planned = steps * epochs
    if budget is not None:
        # A budget run's "epoch" is a chunk of steps between checkpoints; the batches sample products.
        steps, planned = budgets.plan(budget, len(np.unique(catalogue.products[train_idx])), data.steps_per_epoch)
        if budget.kind == "seconds":
            planned = int((state or {}).get("planned_steps", planned))
            epochs = TIME_BUDGET_EPOCHS
        else:
            epochs = planned // steps
    total_steps = tf.Variable(float(planned), trainable=False, dtype=tf.float32, name="planned_steps")
    lr: Any = hp.lr
    if hp.lr_schedule == "cosine":
        # Decays over the whole run; the step count resumes with the optimizer, so does the schedule.
        # A wall-time budget re-plans its total steps as it measures them (total_steps is read each step).
        lr = PlannedCosine(hp.lr, total_steps, alpha=0.01)
    built.trainer.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=built.loss,
        loss_weights=built.loss_weights,
        metrics=built.metrics,
    )
    if state:
        # Build the optimizer first so its slots (and step count) load from the checkpoint too.
        built.trainer.optimizer.build(built.trainer.trainable_variables)
        built.trainer.load_weights(workdir / CHECKPOINT)

    sample_idx = (eval_idx if len(eval_idx) else train_idx)[:PROJECTOR_SAMPLE]
    sample = framed.images[np.sort(sample_idx)].astype(np.float32)
    logger = _TensorBoardLogger(workdir / TENSORBOARD, sample if spec.target == "images" else None)
    checkpoint = _Checkpoint(
        workdir, architecture, hp, steps, state, framing, budget=budget, planned=planned, total_steps=total_steps
    )
    if not checkpoint.finished(epochs):
        built.trainer.fit(
            data.dataset,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=[checkpoint, logger, *callbacks],
            verbose=verbose,
        )
    epochs_done = checkpoint.epoch
    history = checkpoint.history
    train_seconds = checkpoint.seconds
    completed = checkpoint.finished(epochs)
    result = TrainResult(
        workdir=workdir,
        completed=completed,
        epochs_completed=epochs_done,
        initial_epoch=initial_epoch,
        history=history,
        train_seconds=train_seconds,
        dim=built.dim,
        failures=framed.failures,
        steps_done=epochs_done * steps,
        budget=checkpoint.budget_report(),
    )
    if not completed:
        result.peak_rss_bytes = peak_rss_bytes()
        return result

    embedder = float32_embedder(architecture, hp, built, catalogue)
    result.vector_parts = vector_parts(embedder)
    vectors = _embed(embedder, sample)
    names = [label_names[i] for i in labels[np.sort(sample_idx)]]
    _write_projector(workdir / TENSORBOARD, vectors, names, sample)
    relevance = spec.holdout_relevance(hp, catalogue, eval_idx)
    result.holdout = {"relevance": relevance, "indices": [int(i) for i in eval_idx]}
    if len(eval_idx) >= 2:
        result.eval_metrics = _holdout_metrics(embedder, framed, catalogue, train_idx, eval_idx, relevance)
    result.localiser = _localiser(hp, framed, train_idx, workdir)
    result.peak_rss_bytes = peak_rss_bytes()
    meta = {
        "architecture": architecture,
        "hparams": hp.to_dict(),
        "dim": built.dim,
        "image_size": hp.image_size,
        "framing": framing.to_dict(),
        "label_names": label_names,
        "has_classifier_head": built.has_classifier_head,
        "vector_parts": result.vector_parts,
        "flip_average": hp.flip_average,
        "trained_precision": resolve(hp.precision),  # the exported embedder is float32
        "epochs_completed": epochs_done,
        "steps_done": result.steps_done,
        "budget": result.budget,
        "train_seconds": round(train_seconds, 2),
        "n_train": int(len(train_idx)),
        "n_eval": int(len(eval_idx)),
        # The holdout, by position in the training input: what "eval" figures were measured on.
        "holdout": result.holdout,
        "n_failed_images": len(framed.failures),
        "peak_rss_mib": round(result.peak_rss_bytes / 2**20, 1),
        "eval_metrics": result.eval_metrics,
        "history": history,
        **result.localiser,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result.embedder_path, result.meta_path = embedder_save(embedder, workdir, meta)
    return result


FRAMING_SAMPLE = 400


def _localiser(hp: HParams, framed: FramedImages, train_idx: np.ndarray, workdir: Path) -> dict[str, Any]:
    """Train the item localiser on the training photos' cut-outs when asked (ml.localiser); the
    figures, or why there is none, for the version's metrics."""
    if not hp.localiser:
        return {"localiser": None, "localiser_skipped": "not asked for (hparams localiser=false)"}
    if not framed.framing.enabled:
        return {"localiser": None, "localiser_skipped": "framing is off, so no item masks to learn items from"}
    from ml.localiser import train_localiser

    idx = np.sort(train_idx)
    return train_localiser(
        framed.images[idx], framed.masks[idx], workdir=workdir, seed=hp.seed, steps=hp.localiser_steps
    )


def _framing(hp: HParams, source) -> Framing:
    """The catalogue's framing, from an even sample of its images (see ml.framing)."""
    if not hp.framing:
        return Framing(enabled=False)
    step = max(1, len(source) // FRAMING_SAMPLE)
    sample = []
    for i in range(0, len(source), step):
        try:
            if isinstance(source, np.ndarray):
                sample.append(to_rgb(source[i]))
            else:
                with open(source[i], "rb") as f:
                    sample.append(decode(f.read(), hp.image_size))
        except (OSError, ValueError):  # an unreadable file is reported by decode_once
            continue
    return catalogue_framing(sample)


def _holdout_metrics(
    embedder, framed: FramedImages, labels: CatalogueLabels, train_idx, eval_idx, relevance: str
) -> dict:
    """Holdout figures. relevance "category": the held-out products against each other (by
    category); "product": each held-out photo against the training photos (relevant = its own
    product), which is what photo search of a new photo of a catalogue product does."""
    eval_v = _embed_rows(embedder, framed.images, eval_idx)
    if relevance == "product":
        train_v = _embed_rows(embedder, framed.images, train_idx)
        metrics = retrieval_metrics(train_v, labels.products[train_idx], eval_v, labels.products[eval_idx])
    else:
        metrics = retrieval_metrics(
            eval_v, labels.categories[eval_idx], eval_v, labels.categories[eval_idx], exclude_self=True
        )
    return {**metrics.to_dict(), "relevance": relevance}


def _embed(embedder: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(embedder.predict(x, batch_size=256, verbose=0)["embedding"], np.float32)


EMBED_CHUNK = 2048  # cache rows made float32 at a time: 100 MB at 64 px, 1.2 GB at 224 px


def _embed_rows(embedder: keras.Model, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Vectors of images[idx], read and converted a chunk at a time (the cache may be memory-mapped)."""
    idx = np.asarray(idx, np.int64)
    out = [
        _embed(embedder, images[idx[start : start + EMBED_CHUNK]].astype(np.float32))
        for start in range(0, len(idx), EMBED_CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


RESUMABLE = ("epochs", "budget")


def _read_state(workdir: Path, architecture: str, hp: HParams) -> dict | None:
    state = state_read(workdir)
    if state is None:
        return None
    # Through HParams, so a checkpoint from before a hyperparameter existed compares with its default.
    # How long it trains (epochs, budget) may change: a larger one continues a finished run.
    old = {k: v for k, v in HParams.from_dict(state["hparams"]).to_dict().items() if k not in RESUMABLE}
    new = {k: v for k, v in hp.to_dict().items() if k not in RESUMABLE}
    if state["architecture"] != architecture or old != new:
        raise ValueError(
            f"{workdir} holds a checkpoint of a different run ({state['architecture']}, {state['hparams']}); "
            f"use an empty workdir. Received: architecture={architecture!r}, hparams={hp.to_dict()}"
        )
    return state


@keras.saving.register_keras_serializable(package="lookalike")
class PlannedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay to alpha x the initial rate over `total_steps`, a variable read at every step, so
    a wall-time budget can re-plan its length while it trains; constant at the end after that."""

    def __init__(self, initial: float, total_steps: Any, alpha: float = 0.01):
        self.initial, self.total_steps, self.alpha = initial, total_steps, alpha

    def __call__(self, step):
        total = tf.maximum(tf.cast(self.total_steps, tf.float32), 1.0)
        done = tf.minimum(tf.cast(step, tf.float32) / total, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(np.pi * done))
        return self.initial * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        total = self.total_steps.numpy() if hasattr(self.total_steps, "numpy") else self.total_steps
        return {"initial": self.initial, "total_steps": float(total), "alpha": self.alpha}


class _Checkpoint(keras.callbacks.Callback):
    """Saves the training model after each complete epoch; an epoch cut short by stop_training is
    not saved, so a resumed run repeats it rather than skipping its remaining steps.

    With a budget (ml.budget) an epoch is a chunk of steps; a wall-time budget measures the time per
    step after each chunk, re-plans the steps left (the learning-rate schedule follows) and stops
    when another chunk would end more than half a chunk past the budget. A budget run's epoch logs
    get budget_used (0-1) for progress reports."""

    def __init__(
        self,
        workdir: Path,
        architecture: str,
        hp: HParams,
        steps: int,
        state: dict | None,
        framing: Framing,
        *,
        budget: budgets.Budget | None = None,
        planned: int = 0,
        total_steps: tf.Variable | None = None,
    ):
        super().__init__()
        self.workdir, self.architecture, self.hp, self.steps = workdir, architecture, hp, steps
        self.framing = framing
        self.epoch = state["epoch"] if state else 0
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (state or {}).get("history", {}).items()}
        self.seconds = float((state or {}).get("train_seconds", 0.0))
        self.budget, self.planned, self.total_steps = budget, planned, total_steps
        # A wall-time budget that ran out stays spent unless the budget itself changed.
        self.spent = bool(state and state.get("budget_spent") and state.get("budget") == (budget and budget.text))
        self._steps_done = 0
        self._t0 = 0.0

    def finished(self, epochs: int) -> bool:
        if self.budget is not None and self.budget.kind == "seconds":
            return self.spent
        return self.epoch >= epochs

    def used(self) -> float:
        """The share of the budget (or of the epochs) used so far."""
        if self.budget is not None and self.budget.kind == "seconds":
            return 1.0 if self.spent else min(1.0, self.seconds / self.budget.value)
        return min(1.0, self.epoch * self.steps / max(self.planned, 1))

    def budget_report(self) -> dict | None:
        if self.budget is None:
            return None
        return {
            "text": self.budget.text,
            "kind": self.budget.kind,
            "steps": self.epoch * self.steps,
            "planned_steps": self.planned,
            "seconds": round(self.seconds, 1),
            "used": round(self.used(), 3),
        }

    def on_train_begin(self, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps_done += 1

    def on_epoch_end(self, epoch, logs=None):
        # Wall time between epoch ends: the previous checkpoint and log writes count too.
        now = time.monotonic()
        self.seconds += now - self._t0
        self._t0 = now
        if self.model.stop_training and self._steps_done < self.steps:
            return
        self.epoch = epoch + 1
        if self.budget is not None and self.budget.kind == "seconds":
            self._replan()
        if logs is not None and self.budget is not None:
            logs["budget_used"] = self.used()
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        checkpoint_save(
            self.model,
            self.workdir,
            {
                "architecture": self.architecture,
                "hparams": self.hp.to_dict(),
                "epoch": self.epoch,
                "history": self.history,
                "train_seconds": self.seconds,
                "framing": self.framing.to_dict(),
                "planned_steps": self.planned,
                "budget": self.budget.text if self.budget else None,
                "budget_spent": self.spent,
            },
        )

    def _replan(self) -> None:
        done = self.epoch * self.steps
        per_chunk = self.seconds / self.epoch
        left = self.budget.value - self.seconds
        if left < 0.5 * per_chunk:
            self.spent = True
            self.model.stop_training = True
            self.planned = done
        else:
            self.planned = done + max(1, int(round(left / per_chunk))) * self.steps
        self.total_steps.assign(float(self.planned))


def _metadata(plugin: str, data_class: int) -> bytes:
    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = plugin
    md.data_class = data_class
    return md.SerializeToString()


_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)
_IMAGE = _metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
_HISTOGRAM = _metadata("histograms", summary_pb2.DATA_CLASS_TENSOR)


class _TensorBoardLogger(keras.callbacks.Callback):
    """TensorBoard event files written with core tf.summary.write and the plugins' metadata, so they
    need no tensorboard package at training time (it is not a dependency)."""

    def __init__(self, logdir: Path, reconstruct: np.ndarray | None, batch_every: int = 50):
        super().__init__()
        self.train_writer = tf.summary.create_file_writer(str(logdir / "train"))
        self.val_writer = tf.summary.create_file_writer(str(logdir / "validation"))
        self.reconstruct = reconstruct[:8] if reconstruct is not None else None
        self.batch_every = batch_every

    def on_train_batch_end(self, batch, logs=None):
        if logs and batch % self.batch_every == 0 and "loss" in logs:
            step = int(self.model.optimizer.iterations.numpy())
            with self.train_writer.as_default():
                tf.summary.write("batch_loss", tf.constant(float(logs["loss"])), step=step, metadata=_SCALAR)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            writer, name = (self.val_writer, key[4:]) if key.startswith("val_") else (self.train_writer, key)
            with writer.as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value)), step=epoch, metadata=_SCALAR)
        with self.train_writer.as_default():
            for weight in self.model.trainable_weights:
                values = np.asarray(weight.numpy(), np.float64).ravel()
                counts, edges = np.histogram(values, bins=30)
                buckets = np.stack([edges[:-1], edges[1:], counts], axis=1)
                tf.summary.write(f"weights/{weight.path}", tf.constant(buckets), step=epoch, metadata=_HISTOGRAM)
            if self.reconstruct is not None:
                recon = self.model.predict(self.reconstruct, verbose=0)
                grid = np.concatenate(
                    [np.concatenate(list(self.reconstruct), axis=1), np.concatenate(list(recon), axis=1)], axis=0
                )
                png = tf.io.encode_png(np.clip(grid, 0, 255).astype(np.uint8))
                h, w = grid.shape[:2]
                tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), png])
                tf.summary.write("reconstructions", tensor, step=epoch, metadata=_IMAGE)
        self.train_writer.flush()
        self.val_writer.flush()


def _write_projector(logdir: Path, vectors: np.ndarray, names: list[str], images: np.ndarray) -> None:
    """TensorBoard embedding projector files: vectors, labels and a sprite of the images."""
    from PIL import Image

    out = logdir / "projector"
    out.mkdir(parents=True, exist_ok=True)
    np.savetxt(out / "tensors.tsv", vectors, delimiter="\t", fmt="%.5f")
    (out / "metadata.tsv").write_text("".join(name.replace("\t", " ").replace("\n", " ") + "\n" for name in names))
    side = int(np.ceil(np.sqrt(len(images)))) if len(images) else 1
    size = images.shape[1] if len(images) else 1
    sprite = np.zeros((side * size, side * size, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, side)
        sprite[r * size : (r + 1) * size, c * size : (c + 1) * size] = np.clip(img, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(sprite).save(buf, format="PNG")
    (out / "sprite.png").write_bytes(buf.getvalue())
    (logdir / "projector_config.pbtxt").write_text(
        "embeddings {\n"
        '  tensor_name: "embedding"\n'
        '  tensor_path: "projector/tensors.tsv"\n'
        '  metadata_path: "projector/metadata.tsv"\n'
        '  sprite { image_path: "projector/sprite.png" '
        f"single_image_dim: {size} single_image_dim: {size} }}\n"
        "}\n"
    )
