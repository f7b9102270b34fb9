"""The real multi-part vectors bench/weighted_recall.py fits its large catalogues to.

    python bench/weighted_source.py            # writes var/weighted-recall-source.npz

A generated photo catalogue (bench/photo_catalogue.py: 300 products, 3 photos each, plus one held-out
query photo per product in the other style) trains a deep_ranking model with the architecture's
defaults (dim 128, category / colour-group / measured-colour shares 0.3 / 0.3 / 0.05; fewer epochs,
`--epochs`), and every photo and query goes through the exported embedder as indexing and photo
search run it. The .npz holds the served vectors, their layout (ml.layers.vector_parts), the
product and category of each photo, the query vectors, and the kernels of the two cosine heads
(the category head "logits" and the colour-group head "colour_logits"), so a fitted instance
embedding can be given probabilities by the model's own heads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import config  # noqa: E402,F401 - quiet TensorFlow logging before it loads

SOURCE = ROOT / "var" / "weighted-recall-source.npz"
FOLDER = ROOT / "var" / "weighted-recall-catalogue"


def log(message: str) -> None:
    print(f"[weighted_source {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.products < 20 or args.epochs < 1:
        parser.error("--products must be >= 20 and --epochs >= 1")

    import tempfile

    from bench.photo_catalogue import write_catalogue
    from catalog.fashion_mnist import CLASS_NAMES, load_split
    from ml.architectures import defaults
    from ml.inference import Embedder
    from ml.training import train

    started = time.monotonic()
    manifest_path = FOLDER / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text()).get("n_products") == args.products:
        manifest = json.loads(manifest_path.read_text())
    else:
        shapes, labels = load_split("test")
        manifest = write_catalogue(
            FOLDER, shapes, labels, CLASS_NAMES, n_products=args.products, photos=(3, 3), seed=args.seed
        )
    log(f"catalogue of {len(manifest['products'])} products ({time.monotonic() - started:.0f} s)")
    skus = sorted(manifest["products"])
    names = sorted({manifest["products"][s]["category"] for s in skus})
    paths, categories, products, queries = [], [], [], []
    for i, sku in enumerate(skus):
        entry = manifest["products"][sku]
        for name in entry["images"]:
            paths.append(str(FOLDER / "images" / name))
            categories.append(names.index(entry["category"]))
            products.append(i)
        queries.append(str(FOLDER / "queries" / entry["query"]))
    hp = defaults("deep_ranking", None, epochs=args.epochs, eval_fraction=0.0, seed=args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        t = time.monotonic()
        result = train(
            architecture="deep_ranking",
            hparams=hp,
            paths=paths,
            labels=categories,
            groups=products,
            label_names=names,
            workdir=workdir,
        )
        log(f"trained {result.epochs_completed} epochs in {time.monotonic() - t:.0f} s; parts {result.vector_parts}")
        embedder = Embedder.load(result.embedder_path)
        vectors, failures = embedder.embed_files(paths)
        query_vectors, query_failures = embedder.embed_files(queries)
        if failures or query_failures:
            raise SystemExit(f"photos failed to embed: {failures or query_failures}")
        kernels = {
            name: np.asarray(embedder.model.get_layer(name).kernel.numpy(), np.float32)
            for name in ("logits", "colour_logits")
        }
    np.savez(
        SOURCE,
        vectors=np.asarray(vectors, np.float32),
        products=np.array(products),
        categories=np.array(categories),
        category_names=np.array(names),
        queries=np.asarray(query_vectors, np.float32),
        parts=json.dumps(result.vector_parts),
        logits_kernel=kernels["logits"],
        colour_logits_kernel=kernels["colour_logits"],
        hparams=json.dumps(hp.to_dict() if hasattr(hp, "to_dict") else {}),
        epochs=result.epochs_completed,
        train_seconds=result.train_seconds,
    )
    log(
        f"wrote {SOURCE}: {len(vectors)} vectors of dim {vectors.shape[1]}, {len(query_vectors)} queries "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
