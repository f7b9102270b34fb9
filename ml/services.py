"""Training and evaluating model versions: the Django side of ml/ (the Keras side has no Django)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image

from catalog import fashion_mnist
from catalog.images import InvalidImage, read_image
from catalog.models import Category, ProductImage

from . import budget as budgets
from . import hparams as hp
from . import enqueue as messages
from .architectures import defaults, get, recommend
from .claims import model_version_claim
from .devices import device_detect
from .metrics import knn, pixel_baseline, retrieval_metrics
from .models import ModelVersion
from .runtime import embedder_for
from .signals import model_version_trained

logger = logging.getLogger(__name__)
TIME_BUDGET_EPOCHS = 10**6  # ml.training's: a wall-time budget's fit() has no fixed number of chunks
EVALUATION_QUERIES = ("holdout", "fashion-mnist-test")


class TrainingError(Exception):
    """A training run cannot start or finish; str(exc) says why."""


@dataclass
class CatalogueImages:
    """Every catalogue image with what training and evaluation need to know about it."""

    paths: list[str]
    labels: np.ndarray  # index into label_names (the product's category)
    groups: np.ndarray  # product id: several photos of one product share it
    label_names: list[str]
    ids: np.ndarray  # ProductImage ids, in the same order


def catalogue_images() -> CatalogueImages:
    categories = list(Category.objects.order_by("id").values_list("id", "name"))
    index = {pk: i for i, (pk, _) in enumerate(categories)}
    rows = ProductImage.objects.order_by("id").values_list("id", "image", "product_id", "product__category_id")
    ids, paths, labels, groups = [], [], [], []
    for pk, name, product_id, category_id in rows.iterator(chunk_size=5000):
        ids.append(pk)
        paths.append(default_storage.path(name))
        labels.append(index[category_id])
        groups.append(product_id)
    return CatalogueImages(
        paths,
        np.asarray(labels, dtype=np.int64),
        np.asarray(groups, dtype=np.int64),
        [n for _, n in categories],
        np.asarray(ids, dtype=np.int64),
    )


@dataclass(frozen=True)
class CatalogueProfile:
    images: int
    products: int
    median_side: float  # the shorter side of a typical image, in pixels
    grey_share: float  # share of sampled images without colour


def catalogue_profile(sample: int = 200) -> CatalogueProfile:
    """What kind of catalogue this is (sizes from the rows; colour from a sample of the files)."""
    images = ProductImage.objects.count()
    products = ProductImage.objects.values("product_id").distinct().count()
    sides = list(ProductImage.objects.order_by("?").values_list("width", "height", "image")[:sample])
    grey = 0
    checked = 0
    for _, _, name in sides:
        try:
            with ProductImage._meta.get_field("image").storage.open(name) as f:
                rgb = np.asarray(read_image(f.read(), draft=64).image, np.int16)
        except (OSError, InvalidImage):
            continue
        checked += 1
        grey += int(np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).max() < 8)
    median_side = float(np.median([min(w, h) for w, h, _ in sides])) if sides else 0.0
    return CatalogueProfile(images, products, median_side, grey / checked if checked else 0.0)


def recommended_architecture():
    """ml.architectures.recommend for this catalogue: what a new run trains when nothing is chosen."""
    profile = catalogue_profile()
    return recommend(
        images=profile.images, products=profile.products, median_side=profile.median_side, grey_share=profile.grey_share
    )


def model_version_create(
    *,
    architecture: str | None = None,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> ModelVersion:
    """Check the hyperparameters, record a queued version and (unless `enqueue` is False: the caller
    trains it itself) enqueue its training after commit. Without an architecture, the one
    recommended for this catalogue (and its image size), with the reason recorded."""
    metrics = {}
    if architecture is None:
        choice = recommended_architecture()
        architecture, variant = choice.architecture, variant or choice.variant
        overrides = {**choice.overrides, **(overrides or {})}
        metrics["chosen_because"] = choice.reason
    params = defaults(architecture, variant, **(overrides or {}))
    training_preflight(architecture, params)
    version = ModelVersion.objects.create(
        architecture=architecture, hparams=params.to_dict(), epochs=params.epochs, metrics=metrics
    )
    if enqueue:
        transaction.on_commit(lambda: messages.model_version_train(version.pk))
    return version


def training_preflight(architecture: str, params: hp.HParams) -> None:
    """Raise ValueError (ml.budget.BudgetError) when the run cannot work on this catalogue, before
    anything is recorded: a budget too small to show each product twice, or a decoded-image cache
    that will not fit the disk."""
    images = ProductImage.objects.count()
    if not images:
        return  # training itself says the catalogue is empty
    by_product = architecture == "deep_ranking" and params.positives == "product"
    items = ProductImage.objects.values("product_id").distinct().count() if by_product else images
    per_step = params.batch_size // 2 if by_product else params.batch_size
    budgets.check_for_catalogue(budgets.parse(params.budget), items, per_step)
    budgets.check_disk(images, params.image_size, settings.TRAINING_IN_MEMORY_BYTES, settings.MODELS_ROOT)


def _progress_callback(version: ModelVersion, every_seconds: float = 2.0):
    """A Keras callback writing progress to the version's row (throttled) and honouring Cancel.

    Built on call so that importing this module (the admin does) never imports TensorFlow.
    """
    import keras

    class Callback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.last = 0.0

        def on_train_begin(self, logs=None):
            steps = (self.params or {}).get("steps") or 0
            row = {"steps_per_epoch": steps}
            epochs = (self.params or {}).get("epochs")
            if version.hparams.get("budget") and epochs and epochs < TIME_BUDGET_EPOCHS:
                row["epochs"] = epochs  # a step budget's chunks between checkpoints
            ModelVersion.objects.filter(pk=version.pk).update(**row)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if now - self.last < every_seconds:
                return
            self.last = now
            ModelVersion.objects.filter(pk=version.pk).update(step=batch + 1, epoch=self.epoch)
            if ModelVersion.objects.filter(pk=version.pk, cancel_requested=True).exists():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if np.isscalar(v)}}
            version.refresh_from_db(fields=["loss_history", "metrics"])
            history = [r for r in version.loss_history if r.get("epoch") != epoch + 1] + [row]
            update = {"epoch": epoch + 1, "step": 0, "loss_history": history}
            used = logs.get("budget_used")
            if version.hparams.get("budget") and used:
                # Progress is the budget used: a wall-time budget's chunk count is re-estimated each chunk.
                update["epochs"] = max(epoch + 1, int(round((epoch + 1) / used)))
                update["metrics"] = {**version.metrics, "budget_used": round(float(used), 3)}
            ModelVersion.objects.filter(pk=version.pk).update(**update)

    return Callback()


def model_version_train(*, model_version: ModelVersion, extra_callbacks: tuple = ()) -> ModelVersion:
    """Train (or resume) a queued/running version on the catalogue's images, then evaluate it.

    Safe to call again after a crash: training resumes from the last epoch checkpoint in the
    version's workdir, and a finished version is left as it is. The run claims the version first
    (ml.claims): while another process trains it, this call returns the version as it is. A version
    that succeeds is announced with ml.signals.model_version_trained (search indexes it there when
    asked to).
    """
    with model_version_claim(model_version_id=model_version.pk) as claimed:
        if not claimed:
            logger.info("Model version %s is being trained by another process; not training it here.", model_version.pk)
            return ModelVersion.objects.get(pk=model_version.pk)
        return _model_version_train_claimed(model_version=model_version, extra_callbacks=extra_callbacks)


def _model_version_train_claimed(*, model_version: ModelVersion, extra_callbacks: tuple) -> ModelVersion:
    from .training import train  # TensorFlow loads here, only in the process that trains

    version = ModelVersion.objects.get(pk=model_version.pk)
    if version.is_finished:
        return version
    if version.cancel_requested:
        return _finish(version, ModelVersion.Status.CANCELLED)
    ModelVersion.objects.filter(
        pk=version.pk, status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.RUNNING]
    ).update(status=ModelVersion.Status.RUNNING, started_at=timezone.now(), error="")
    try:
        data = catalogue_images()
        if len(set(data.labels.tolist())) < 2 or len(data.paths) < 4:
            raise TrainingError("Training needs at least 4 images in at least 2 categories; import a catalogue first.")
        params = get(version.architecture).validate(hp.HParams.from_dict(version.hparams))
        result = train(
            architecture=version.architecture,
            hparams=params,
            paths=data.paths,
            labels=data.labels,
            groups=data.groups,
            label_names=data.label_names,
            workdir=version.workdir,
            callbacks=[_progress_callback(version), *extra_callbacks],
            in_memory_bytes=settings.TRAINING_IN_MEMORY_BYTES,
        )
        split = {
            "relevance": result.holdout.get("relevance", "category"),
            "image_ids": [int(data.ids[i]) for i in result.holdout.get("indices", [])],
            # Images up to this id were known at training: the catalogue side of the holdout figures.
            "max_image_id": int(data.ids.max()),
            "failed_images": len(result.failures),
        }
    except TrainingError as exc:
        logger.warning("Model version %s cannot be trained: %s", version.pk, exc)
        return _finish(version, ModelVersion.Status.FAILED, error=str(exc))
    except Exception as exc:  # the run fails with its reason on the record; the task does not retry it
        logger.exception("Training of model version %s failed", version.pk)
        return _finish(version, ModelVersion.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    version.refresh_from_db()
    if version.cancel_requested:
        return _finish(version, ModelVersion.Status.CANCELLED)
    if not result.completed or result.embedder_path is None or not result.embedder_path.exists():
        # Stopped early by a callback (not a cancel): there is no model to index or activate.
        return _finish(
            version,
            ModelVersion.Status.FAILED,
            error=f"Training stopped after {result.epochs_completed} of {params.epochs} epochs, before the model was exported.",
        )
    ModelVersion.objects.filter(pk=version.pk).update(
        dim=result.dim,
        image_size=params.image_size,
        label_names=data.label_names,
        metrics={**version.metrics, "split": split},
    )
    version.refresh_from_db()
    if not split["image_ids"]:
        metrics = {"note": "No holdout (eval_fraction=0): every image trained, so there are no holdout figures."}
    else:
        try:
            metrics = model_version_evaluate(model_version=version, queries="holdout")
        except Exception as exc:  # noqa: BLE001 - a model that trained is still usable without figures
            logger.exception("Evaluation of model version %s failed", version.pk)
            metrics = {"error": str(exc)}
    version = _finish(
        version,
        ModelVersion.Status.SUCCEEDED,
        metrics={
            "holdout": metrics,
            "train_seconds": round(result.train_seconds, 1),
            "trained_on": _trained_on(params),
            "peak_rss_mib": round(result.peak_rss_bytes / 2**20, 1),
            "steps": result.steps_done,
            **({"budget": result.budget} if result.budget else {}),
            **({"vector_parts": result.vector_parts} if result.vector_parts else {}),
            **result.localiser,
        },
    )
    model_version_trained.send(sender=ModelVersion, model_version=version)
    return version


def _trained_on(params: hp.HParams) -> dict:
    """The device this process trained on and the precision it trained in, for the admin."""
    from ml.precision import resolve  # Keras: loaded here already, this process just trained

    try:
        return {**device_detect().to_dict(), "trained_precision": resolve(params.precision)}
    except Exception as exc:  # noqa: BLE001 - a model that trained is not failed by its report
        logger.warning("Could not tell which device trained: %s", exc)
        return {}


def _finish(version: ModelVersion, status: str, *, error: str = "", metrics: dict | None = None) -> ModelVersion:
    updates: dict[str, Any] = {"status": status, "finished_at": timezone.now(), "error": error}
    if metrics is not None:
        version.refresh_from_db(fields=["metrics"])
        updates["metrics"] = {**version.metrics, **metrics}
    ModelVersion.objects.filter(pk=version.pk).update(**updates)
    version.refresh_from_db()
    return version


def model_version_cancel(*, model_version: ModelVersion) -> ModelVersion:
    """Ask a run to stop: a queued one is cancelled now, a running one at its next progress write."""
    ModelVersion.objects.filter(pk=model_version.pk).update(cancel_requested=True)
    ModelVersion.objects.filter(pk=model_version.pk, status=ModelVersion.Status.QUEUED).update(
        status=ModelVersion.Status.CANCELLED, finished_at=timezone.now()
    )
    model_version.refresh_from_db()
    return model_version


def model_version_evaluate(*, model_version: ModelVersion, queries: str = "holdout", k: int = 10) -> dict:
    """Retrieval quality of a trained version next to raw-pixel L2 on the same queries and catalogue.

    holdout: the holdout recorded at training (metrics["split"]) queries the images that trained;
    relevant = same category, or, for instance-level training, same product.
    fashion-mnist-test: the 10,000 Fashion-MNIST test images query the whole catalogue (meant for the
    train split loaded as the catalogue); relevant = same category. Stores the figures on the record.
    """
    if k < 1:
        raise ValueError(f"k must be positive. Received: k={k}")
    if queries not in EVALUATION_QUERIES:
        raise ValueError(f"queries must be one of {EVALUATION_QUERIES}. Received: queries={queries!r}")
    if model_version.status != ModelVersion.Status.SUCCEEDED and model_version.dim is None:
        raise TrainingError(f"Model version {model_version.pk} has not finished training.")
    embedder = embedder_for(model_version)
    data = catalogue_images()
    probabilities = None
    vectors, failures = embedder.embed_files(data.paths, batch_size=512)
    ok = np.array([i not in failures for i in range(len(data.paths))])
    pixels = _load_pixels(data.paths, size=embedder.image_size)
    if queries == "holdout":
        # The split recorded at training: images added since are in neither side.
        split = model_version.metrics.get("split") or {}
        if not split.get("image_ids"):
            raise TrainingError(
                f"Model version {model_version.pk} has no holdout (trained with eval_fraction=0 "
                "or before holdouts were recorded): there are no holdout figures."
            )
        position = {int(pk): i for i, pk in enumerate(data.ids)}
        held = set(split["image_ids"])
        eval_idx = np.array([position[pk] for pk in split["image_ids"] if pk in position], np.int64)
        train_idx = np.array(
            [i for i, pk in enumerate(data.ids) if pk <= split["max_image_id"] and pk not in held], np.int64
        )
        train_idx, eval_idx = train_idx[ok[train_idx]], eval_idx[ok[eval_idx]]
        target = data.groups if split.get("relevance") == "product" else data.labels
        cat_v, cat_y, cat_p = vectors[train_idx], target[train_idx], pixels[train_idx]
        q_v, q_y, q_p = vectors[eval_idx], target[eval_idx], pixels[eval_idx]
    else:
        images, labels = fashion_mnist.load_split("test")
        names = {name: i for i, name in enumerate(data.label_names)}
        try:
            q_y = np.array([names[fashion_mnist.CLASS_NAMES[label]] for label in labels])
        except KeyError as exc:
            raise TrainingError(
                f"The catalogue has no category {exc}: load the Fashion-MNIST train split first."
            ) from exc
        q_v, probabilities = embedder.predict_arrays(images)
        q_p = _resize_pixels(images, embedder.image_size)
        cat_v, cat_y, cat_p = vectors[ok], data.labels[ok], pixels[ok]
    model = retrieval_metrics(cat_v, cat_y, q_v, q_y).to_dict()
    baseline = pixel_baseline(cat_p, cat_y, q_p, q_y).to_dict()
    model["precision_at_k"] = _precision_at(cat_v, cat_y, q_v, q_y, k)
    baseline["precision_at_k"] = _precision_at(_flat(cat_p), cat_y, _flat(q_p), q_y, k)
    figures = {"model": model, "pixels": baseline, "queries": int(len(q_y)), "catalogue": int(len(cat_y)), "k": k}
    if queries == "fashion-mnist-test" and probabilities is not None:
        # Classifier variants: how often the softmax head's category guess is right.
        guessed = [embedder.label_names[i] for i in probabilities.argmax(axis=1)]
        figures["accuracy"] = float(np.mean([g == data.label_names[y] for g, y in zip(guessed, q_y)]))
    model_version.refresh_from_db(fields=["metrics"])
    ModelVersion.objects.filter(pk=model_version.pk).update(metrics={**model_version.metrics, queries: figures})
    return figures


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32).reshape(len(images), -1) / 255.0


def _precision_at(cat_v: np.ndarray, cat_y: np.ndarray, q_v: np.ndarray, q_y: np.ndarray, k: int) -> float:
    idx, _ = knn(cat_v, q_v, min(k, len(cat_v)))
    return float((cat_y[idx] == q_y[:, None]).mean())


def _resize_pixels(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size))) for img in images])


def _load_pixels(paths: list[str], *, size: int) -> np.ndarray:
    """Catalogue images as grayscale uint8 [n, size, size], for the raw-pixel baseline."""
    out = np.zeros((len(paths), size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("L")
                out[i] = np.asarray(img if img.size == (size, size) else img.resize((size, size)))
        except OSError:
            # The embedder reports this file as failed; its pixel row stays black.
            continue
    return out
