"""Retrieval benchmark on Fashion-MNIST: 60k train images are the catalogue, 10k test images the queries.

For raw pixels and each architecture (variant), trains with ml.training on in-memory arrays, then
reports P@1, P@10, mAP@100 (ml.metrics), training time, embedding dim and, for models with a
classifier head, test accuracy. Prints a table, writes bench/results/retrieval.json and .png.

    python -m bench.retrieval                 # full run
    python -m bench.retrieval --quick         # 10k/2k subset, 1 epoch
    python -m bench.retrieval --only classifier:cnn,deep_ranking --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.fashion_mnist import CLASS_NAMES, load_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"precision_at_1": 0.93, "precision_at_10": 0.92}  # for the best architecture
RUNS = ("pixels", "classifier:cnn", "classifier:softmax", "classifier:mlp", "autoencoder", "deep_ranking")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {', '.join(RUNS)}; 'classifier' means all three variants"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override every model's default epochs")
    parser.add_argument("--quick", action="store_true", help="10k catalogue, 2k queries, 1 epoch")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also score the default model on perturbed test photos (off-centre, scaled, ...)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter of every model run, e.g. --set augment=false; the row's name records it",
    )
    args = parser.parse_args(argv)
    runs = list(RUNS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        runs = []
        for w in wanted:
            match = [r for r in RUNS if r == w or r.split(":")[0] == w]
            if not match:
                parser.error(f"unknown run {w!r}; choose from {', '.join(RUNS)}")
            runs += [m for m in match if m not in runs]
    args.overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE. Received: {item!r}")
        try:
            args.overrides[key.strip()] = json.loads(value)  # numbers, true/false
        except ValueError:
            args.overrides[key.strip()] = value
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1. Received: {args.epochs}")
    return args, runs


# How people photograph products, applied to the Fashion-MNIST test images made into photos: the item
# enlarged 4x on a black frame 1.4x its size, as a product photo leaves room around the item
# (--robustness). Each a function of (uint8 [28, 28] item, rng) -> uint8 photo.
PHOTO_SIDE = 112
FRAME = 1.4


def _photo(
    item: np.ndarray,
    *,
    scale: float = 1.0,
    offset=(0.5, 0.5),
    angle: float = 0.0,
    mirror: bool = False,
    canvas: float = FRAME,
) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(item).resize((PHOTO_SIDE, PHOTO_SIDE), Image.BICUBIC)
    if mirror:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = int(PHOTO_SIDE * canvas)
    item_side = max(4, int(PHOTO_SIDE * scale))
    img = img.resize((item_side, item_side), Image.BILINEAR)
    out = Image.new("L", (side, side), 0)
    out.paste(img, (int((side - item_side) * offset[0]), int((side - item_side) * offset[1])))
    if angle:  # the camera turns, not the item: the whole photo rotates
        out = out.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(out)


def _jpeg(photo: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


PERTURBATIONS = {
    "clean (enlarged to a photo)": lambda im, r: _photo(im),
    "off-centre": lambda im, r: _photo(im, canvas=2.0, offset=(r.choice([0, 1]), r.choice([0, 1]))),
    "smaller in the frame (0.7x)": lambda im, r: _photo(im, scale=0.7),
    "larger in the frame (1.3x)": lambda im, r: _photo(im, scale=1.3),
    "rotated +15 deg": lambda im, r: _photo(im, angle=15),
    "rotated -15 deg": lambda im, r: _photo(im, angle=-15),
    "darker (-40%)": lambda im, r: (_photo(im) * 0.6).astype(np.uint8),
    "brighter (+40%)": lambda im, r: np.clip(_photo(im) * 1.4, 0, 255).astype(np.uint8),
    "JPEG quality 20": lambda im, r: _jpeg(_photo(im), 20),
    "mirrored": lambda im, r: _photo(im, mirror=True),
    "dark item on white": lambda im, r: 255 - _photo(im),
}


def robustness(
    embedder, x: np.ndarray, catalogue: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, n: int = 2000
) -> dict:
    """Category P@10 of perturbed test photos against the catalogue's vectors; the catalogue image
    itself re-uploaded as a photo -> its own image first."""
    from ml.metrics import knn, retrieval_metrics

    rng = np.random.default_rng(0)
    pick = rng.choice(len(xt), size=min(n, len(xt)), replace=False)
    rows = {}
    for name, fn in PERTURBATIONS.items():
        photos = np.stack([fn(xt[i], rng) for i in pick])
        q = embedder.embed_arrays(photos)
        m = retrieval_metrics(catalogue, y, q, yt[pick]).to_dict()
        rows[name] = {k: round(m[k], 4) for k in ("precision_at_1", "precision_at_10")}
        print(f"   robustness {name}: {rows[name]}", flush=True)
    own = rng.choice(len(catalogue), size=min(n, len(catalogue)), replace=False)
    idx, _ = knn(catalogue, embedder.embed_arrays(np.stack([_photo(x[i]) for i in own])), 1)
    rows["catalogue image re-uploaded: own image first"] = {"hit_at_1": round(float((idx[:, 0] == own).mean()), 4)}
    return rows


def run_model(
    name: str, x, y, xt, yt, epochs: int | None, extra: dict | None = None, with_robustness: bool = False
) -> dict:
    from ml.architectures import defaults
    from ml.inference import Embedder
    from ml.metrics import retrieval_metrics
    from ml.training import train

    architecture, _, variant = name.partition(":")
    overrides = {"eval_fraction": 0.0, **(extra or {})}
    if epochs is not None:
        overrides["epochs"] = epochs
    hp = defaults(architecture, variant or None, **overrides)
    with tempfile.TemporaryDirectory(prefix=f"bench-{architecture}-") as workdir:
        start, cpu_start = time.monotonic(), time.process_time()
        result = train(
            architecture=architecture,
            hparams=hp,
            images=x,
            labels=y,
            label_names=CLASS_NAMES,
            workdir=workdir,
            verbose=2,
        )
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
        embedder = Embedder.load(workdir)
        t0 = time.monotonic()
        catalogue, _ = embedder.predict_arrays(x)
        queries, probs = embedder.predict_arrays(xt)
        embed_seconds = time.monotonic() - t0
        # Flip test-time averaging: the embedding of an image and of its mirror image, averaged.
        catalogue_flip, _ = embedder.predict_arrays(x[:, :, ::-1])
        queries_flip, _ = embedder.predict_arrays(xt[:, :, ::-1])
        robust = robustness(embedder, x, catalogue, y, xt, yt) if with_robustness else None
    metrics = retrieval_metrics(catalogue, y, queries, yt)
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
    flip = retrieval_metrics(unit(catalogue + catalogue_flip), y, unit(queries + queries_flip), yt).to_dict()
    return {
        "flip_average": {k: flip[k] for k in ("precision_at_1", "precision_at_10", "map_at_100")},
        "name": name,
        **{k: metrics.to_dict()[k] for k in ("precision_at_1", "precision_at_10", "map_at_100")},
        "test_accuracy": float((probs.argmax(1) == yt).mean()) if probs is not None else None,
        "train_seconds": round(seconds, 1),
        # CPU seconds over all threads: unlike wall time, not inflated by other work on the machine.
        "train_cpu_seconds": round(cpu_seconds, 1),
        "embed_seconds": round(embed_seconds, 1),
        "dim": int(catalogue.shape[1]),
        "epochs": hp.epochs,
        "hparams": hp.to_dict(),
        "final_loss": result.history.get("loss", [None])[-1],
        **({"robustness": robust} if robust else {}),
    }


def run_pixels(x, y, xt, yt) -> dict:
    from ml.metrics import pixel_baseline

    start = time.monotonic()
    metrics = pixel_baseline(x, y, xt, yt)
    return {
        "name": "pixels",
        **{k: metrics.to_dict()[k] for k in ("precision_at_1", "precision_at_10", "map_at_100")},
        "test_accuracy": None,
        "train_seconds": 0.0,
        "embed_seconds": round(time.monotonic() - start, 1),
        "dim": int(np.prod(x.shape[1:])),
        "epochs": 0,
    }


def row_name(run: str, overrides: dict) -> str:
    """A row's name: the run, plus the overridden hyperparameters (pixels take none)."""
    if not overrides or run == "pixels":
        return run
    return f"{run} ({', '.join(f'{k}={v}' for k, v in overrides.items())})"


def table(rows: list[dict]) -> str:
    head = f"{'model':<20} {'P@1':>6} {'P@10':>6} {'mAP@100':>8} {'acc':>6} {'dim':>5} {'epochs':>6} {'train s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['test_accuracy']:.3f}" if r.get("test_accuracy") is not None else "-"
        lines.append(
            f"{r['name']:<20} {r['precision_at_1']:>6.3f} {r['precision_at_10']:>6.3f} "
            f"{r['map_at_100']:>8.3f} {acc:>6} {r['dim']:>5} {r['epochs']:>6} {r['train_seconds']:>8.1f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("precision_at_1", "P@1"), ("precision_at_10", "P@10"), ("map_at_100", "mAP@100")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    width = 0.8 / len(keys)
    xs = np.arange(len(rows))
    colors = ("#3b5bdb", "#e8590c", "#2b8a3e")
    for i, ((key, label), color) in enumerate(zip(keys, colors)):
        bars = ax.bar(xs + (i - 1) * width, [r[key] for r in rows], width, label=label, color=color)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
    for value, label, color, va in (
        (TARGETS["precision_at_1"], "P@1 target", colors[0], "bottom"),
        (TARGETS["precision_at_10"], "P@10 target", colors[1], "top"),
    ):
        ax.axhline(value, color=color, linestyle="--", linewidth=1)
        ax.text(len(rows) - 0.5, value, f" {label} {value}", color=color, fontsize=7, va=va, ha="right")
    ax.set_xticks(xs, [r["name"] for r in rows], rotation=20, ha="right")
    # The differences that matter are a few points apart: start the axis near the weakest score.
    low = min(r[key] for r in rows for key, _ in keys)
    ax.set_ylim(max(0.0, np.floor(low * 20) / 20 - 0.05), 1.0)
    ax.set_ylabel("score (relevant = same category)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report(argv, x, xt, rows: list[dict], wall_seconds: float) -> dict:
    import keras
    import tensorflow as tf

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.retrieval", *(argv if argv is not None else sys.argv[1:])]),
        "dataset": {"name": "Fashion-MNIST", "catalogue": int(len(x)), "queries": int(len(xt))},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "wall_seconds": round(wall_seconds, 1),
        "relevance": "same label; AP@k averages precision over the relevant hits in the top k",
        "note": "each row carries the load average when it finished: training times are inflated when it exceeds 2",
        "results": rows,
    }


def main(argv=None) -> int:
    args, runs = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    x, y = load_split("train")
    xt, yt = load_split("test")
    epochs = args.epochs
    if args.quick:
        x, y, xt, yt = x[:10000], y[:10000], xt[:2000], yt[:2000]
        epochs = epochs or 1
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"retrieval{'_quick' if args.quick else ''}.json"
    # Rows from earlier invocations stay unless re-run, so runs can be done one at a time and a
    # crash loses only the run in progress.
    previous = json.loads(path.read_text()).get("results", []) if path.exists() else []
    rows = [r for r in previous if r["name"] not in {row_name(name, args.overrides) for name in runs}]
    for name in runs:
        print(f"== {name}", flush=True)
        row = (
            run_pixels(x, y, xt, yt)
            if name == "pixels"
            else run_model(
                name, x, y, xt, yt, epochs, args.overrides, with_robustness=args.robustness and name == "classifier:cnn"
            )
        )
        row["name"] = row_name(name, args.overrides)
        row["load_average"] = [round(v, 2) for v in os.getloadavg()]
        row["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = [r for r in rows if r["name"] != row["name"]] + [row]
        rows.sort(key=lambda r: RUNS.index(r["name"]) if r["name"] in RUNS else len(RUNS))
        report = _report(argv, x, xt, rows, time.monotonic() - started)
        path.write_text(json.dumps(report, indent=2))
        print(table([row]).splitlines()[-1], flush=True)

    plot(rows, path.with_suffix(".png"), f"Fashion-MNIST retrieval ({len(x)} catalogue, {len(xt)} queries)")
    print()
    print(table(rows))
    print(f"\nwall time {time.monotonic() - started:.1f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
