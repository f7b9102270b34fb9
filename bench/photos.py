"""Photo benchmark: a generated colour photo catalogue, end to end as a shop would run it.

1. Generates the catalogue (bench/photo_catalogue.py): Fashion-MNIST shapes given colours and
   patterns, photographed 2-4 times each on varied backgrounds at varied scale, offset, rotation,
   mirror and light (some EXIF-rotated JPEGs, some transparent PNG cut-outs), plus one held-out
   photo per product in a style the catalogue never uses, and one on a dark background.
2. Imports it with `import_catalog`, trains with the `train_model` defaults (the architecture and
   image size ml.architectures.recommend picks for this catalogue), indexes it through a real
   Celery worker, activates.
3. Scores through the JSON API: held-out photo -> own product (hit@1, hit@10); similar items (k=10)
   sharing the category, and the category and colour (with the ceiling: how many other products
   share the cell); a robustness table (the held-out photos off-centre, scaled, rotated, darker and
   brighter, JPEG quality 20, mirrored, on the opposite background; catalogue images re-uploaded).
4. Baselines on the same photos: raw pixels, and a colour histogram joined to pixels.
5. The training input check: an epoch over the catalogue's photos against the same epoch over
   pre-decoded arrays.

    python bench/photos.py                    # 1,000 products (about 25 minutes on 2 cores)
    python bench/photos.py --quick            # 120 products, 4 epochs: checks the pipeline
    python bench/photos.py --products 200 --epochs 30 --variant p200 --localiser on --only-shopper
                                              # shopper photos (bench/shopper_photos.py): whole photo,
                                              # proposed box, true box; the proposed box's IoU

Runs against its own database, media and model folders (var/bench-photos*), Redis databases 5/4
(quick) or 3/2, or CELERY_BROKER_URL / CACHE_URL where set.
Prints tables; writes bench/results/photos.json and photos.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import LoadSampler, table, write_report  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "hit_at_1": 0.90,
    "colour_share_of_ceiling": 0.80,
    "vs_baseline": 3.0,
    "train_minutes": 15.0,
    "reupload_hit_at_1": 0.95,
}


def log(message: str) -> None:
    print(f"[photos {time.strftime('%H:%M:%S')}] {message}", flush=True)


DEFAULT_SEED = 7


def _tag(quick: bool, seed: int, variant: str = "") -> str:
    """var/ folders of this run: another seed (another catalogue), or another size or training
    variant (--variant), gets its own database and files."""
    return (
        ("bench-photos-quick" if quick else "bench-photos")
        + ("" if seed == DEFAULT_SEED else f"-seed{seed}")
        + (f"-{variant}" if variant else "")
    )


def environment(quick: bool, seed: int = DEFAULT_SEED, variant: str = "") -> dict[str, str]:
    tag = _tag(quick, seed, variant)
    return {
        "LOOKALIKE_PGDATA": str(ROOT / "var" / f"{tag}-pgdata"),
        "MEDIA_ROOT": str(ROOT / "var" / f"{tag}-media"),
        "MODELS_ROOT": str(ROOT / "var" / f"{tag}-models"),
        "STATIC_ROOT": str(ROOT / "var" / "bench-static"),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{5 if quick else 3}",
        "CACHE_URL": f"redis://127.0.0.1:6379/{4 if quick else 2}",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-secret",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "SEARCH_RATE_LIMIT": "1000000/minute",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def django_setup(quick: bool, seed: int = DEFAULT_SEED, variant: str = "") -> None:
    for key, value in environment(quick, seed, variant).items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    from config.database import database_ensure

    database_ensure()  # the settings start no database themselves
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- 1. the catalogue ---------------------------------------------------------------------------


def generate(folder: Path, n_products: int, seed: int) -> dict:
    from bench.photo_catalogue import GENERATOR_VERSION, write_catalogue
    from catalog.fashion_mnist import CLASS_NAMES, load_split

    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("n_products"), manifest.get("seed"), manifest.get("generator")) == (
            n_products,
            seed,
            GENERATOR_VERSION,
        ):
            return manifest
    # Test-split shapes: the Fashion-MNIST benchmark trains on the train split, this never sees it.
    shapes, labels = load_split("test")
    started = time.monotonic()
    manifest = write_catalogue(
        folder,
        shapes,
        labels,
        CLASS_NAMES,
        n_products=n_products,
        seed=seed,
        progress=lambda i, n: i % max(1, n // 10) == 0 and log(f"generated {i}/{n} products"),
    )
    log(f"generated {n_products} products in {time.monotonic() - started:.0f} s")
    return manifest


# --- 2. import, train, index --------------------------------------------------------------------


def import_catalogue(folder: Path, hold_back: int = 0) -> float:
    """`import_catalog` of the catalogue, but for its last `hold_back` products (added after training)."""
    from django.core.management import call_command

    from catalog.models import Product

    if Product.objects.exists():
        return 0.0
    source = folder / "products.csv"
    if hold_back:
        lines = source.read_text().splitlines(keepends=True)
        source = folder / f"products-but-last-{hold_back}.csv"
        source.write_text("".join(lines[: len(lines) - hold_back]))
    started = time.monotonic()
    call_command("import_catalog", str(source), images=str(folder / "images"), verbosity=0)
    return time.monotonic() - started


def import_the_rest(folder: Path) -> list[str]:
    """Import the whole catalogue (after training: the held-back products are new); their SKUs."""
    from django.core.management import call_command

    from catalog.models import Product

    before = set(Product.objects.values_list("sku", flat=True))
    call_command("import_catalog", str(folder / "products.csv"), images=str(folder / "images"), verbosity=0)
    return sorted(set(Product.objects.values_list("sku", flat=True)) - before)


def train_default(epochs: int | None, **options) -> dict:
    """`train_model` with the defaults (as a person runs it; `options`: its flags, e.g. localiser="on"),
    timed in wall and CPU seconds."""
    from django.core.management import call_command

    from ml.models import ModelVersion

    version = ModelVersion.objects.filter(status=ModelVersion.Status.SUCCEEDED).order_by("-id").first()
    if version is not None and version.metrics.get("bench_train"):
        return version.metrics["bench_train"]
    wall, cpu = time.monotonic(), time.process_time()
    call_command("train_model", **({"epochs": epochs} if epochs else {}), **options)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    version = ModelVersion.objects.order_by("-id").first()
    if version.status != ModelVersion.Status.SUCCEEDED:
        raise SystemExit(f"training failed: {version.error}")
    info = {
        "version": version.pk,
        "architecture": version.architecture,
        "image_size": version.image_size,
        "epochs": version.epochs,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "train_seconds": version.metrics.get("train_seconds"),
        "holdout": version.metrics.get("holdout"),
        "localiser": version.metrics.get("localiser"),
        "localiser_skipped": version.metrics.get("localiser_skipped"),
        "hparams": {k: version.hparams.get(k) for k in ("localiser", "localiser_steps", "scene_views")},
    }
    ModelVersion.objects.filter(pk=version.pk).update(metrics={**version.metrics, "bench_train": info})
    return info


def index_with_worker(version_id: int, quick: bool, seed: int = DEFAULT_SEED, variant: str = "") -> float:
    """Index through a real Celery worker on the embeddings queue, then activate."""
    from ml.models import ModelVersion
    from search.models import IndexJob
    from search.indexing.progress import index_coverage
    from search.serving.versions import model_version_is_active
    from search.indexing.jobs import index_job_start
    from search.serving.activation import model_version_activate

    version = ModelVersion.objects.get(pk=version_id)
    if model_version_is_active(model_version=version):
        return 0.0
    env = {**environment(quick, seed, variant), **os.environ}  # what django_setup set, or the caller's own
    logs = ROOT / "var" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            "embeddings",
            "-c",
            "1",
            "-l",
            "warning",
            "-n",
            f"photos-bench-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "photos-worker.log", "w"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    try:
        started = time.monotonic()
        job = index_job_start(model_version=version)
        while True:
            job.refresh_from_db()
            if job.status not in IndexJob.UNFINISHED:
                break
            if worker.poll() is not None:
                raise SystemExit("the Celery worker died; see var/bench-logs/photos-worker.log")
            time.sleep(1.0)
        seconds = time.monotonic() - started
        log(f"indexed: {index_coverage(model_version=version)} in {seconds:.0f} s")
        if not model_version_is_active(model_version=version):
            model_version_activate(model_version=version)
        return seconds
    finally:
        worker.terminate()
        worker.wait(30)


# --- 3. scoring through the JSON API --------------------------------------------------------------


class Api:
    def __init__(self):
        from django.test import Client

        self.client = Client()

    def search(self, data: bytes, name: str, k: int = 10, crop: str | None = None) -> list[int]:
        return [r["id"] for r in self.search_json(data, name, k, crop)["results"]]

    def search_json(self, data: bytes, name: str, k: int = 10, crop: str | None = None) -> dict:
        from django.core.files.uploadedfile import SimpleUploadedFile

        fields = {"image": SimpleUploadedFile(name, data), "k": k, **({"crop": crop} if crop else {})}
        response = self.client.post("/api/search", fields)
        if response.status_code != 200:
            raise RuntimeError(f"/api/search answered {response.status_code}: {response.content[:200]!r}")
        return response.json()

    def similar(self, product_id: int, k: int = 10) -> list[int]:
        response = self.client.get(f"/api/products/{product_id}/similar", {"k": k})
        if response.status_code != 200:
            raise RuntimeError(f"similar answered {response.status_code}: {response.content[:200]!r}")
        return [r["id"] for r in response.json()["results"]]


def _hits(found: list[list[int]], truth: list[int]) -> dict:
    first = np.array([bool(f) and f[0] == t for f, t in zip(found, truth)])
    top = np.array([t in f[:10] for f, t in zip(found, truth)])
    return {"hit_at_1": round(float(first.mean()), 4), "hit_at_10": round(float(top.mean()), 4), "n": len(truth)}


def similar_shares(neighbours: dict[int, list[int]], cat: dict[int, str], colour: dict[int, str]) -> dict:
    same_cat, same_cell = [], []
    for pid, found in neighbours.items():
        same_cat.append(np.mean([cat[q] == cat[pid] for q in found]) if found else 0.0)
        same_cell.append(np.mean([cat[q] == cat[pid] and colour[q] == colour[pid] for q in found]) if found else 0.0)
    cells: dict[tuple, int] = {}
    for pid in cat:
        cells[(cat[pid], colour[pid])] = cells.get((cat[pid], colour[pid]), 0) + 1
    ceiling = np.mean([min(10, cells[(cat[p], colour[p])] - 1) / 10 for p in cat])
    return {
        "same_category": round(float(np.mean(same_cat)), 4),
        "same_category_and_colour": round(float(np.mean(same_cell)), 4),
        "ceiling": round(float(ceiling), 4),
    }


# perturbations of a decoded photo (uint8 RGB) -> another photo, as people take them
def _border_colour(rgb: np.ndarray) -> tuple[int, ...]:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))


def perturb(rgb: np.ndarray, kind: str, rng: np.random.Generator, opposite: np.ndarray | None = None) -> np.ndarray:
    from PIL import Image, ImageOps

    img = Image.fromarray(rgb)
    w, h = img.size
    fill = _border_colour(rgb)
    if kind == "off_centre":
        canvas = Image.new("RGB", (int(w * 1.6), int(h * 1.6)), fill)
        canvas.paste(img, (int(rng.choice([0, 0.6]) * w), int(rng.choice([0, 0.6]) * h)))
        return np.asarray(canvas)
    if kind in ("scale_0.7", "scale_1.3"):
        s = 0.7 if kind == "scale_0.7" else 1.3
        scaled = img.resize((max(1, int(w * s)), max(1, int(h * s))), Image.BILINEAR)
        canvas = Image.new("RGB", (w, h), fill)
        canvas.paste(scaled, ((w - scaled.width) // 2, (h - scaled.height) // 2))
        return np.asarray(canvas)
    if kind in ("rotate_+15", "rotate_-15"):
        return np.asarray(img.rotate(15 if kind == "rotate_+15" else -15, resample=Image.BILINEAR, fillcolor=fill))
    if kind in ("darker_40", "brighter_40"):
        g = 0.6 if kind == "darker_40" else 1.4
        return np.clip(rgb.astype(np.float32) * g, 0, 255).astype(np.uint8)
    if kind == "jpeg_q20":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=20)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if kind == "mirrored":
        return np.asarray(ImageOps.mirror(img))
    if kind == "opposite_background" and opposite is not None:
        return opposite
    return rgb


PERTURBATIONS = (
    "clean",
    "off_centre",
    "scale_0.7",
    "scale_1.3",
    "rotate_+15",
    "rotate_-15",
    "darker_40",
    "brighter_40",
    "jpeg_q20",
    "mirrored",
    "opposite_background",
)


def robustness_drop(robustness: dict) -> float:
    """The largest fall of category P@10 under a perturbation, from the clean figure of the same
    queries (the subset every perturbation uses)."""
    clean = robustness["clean"]["subset"].get("category_p_at_10", robustness["clean"]["category_p_at_10"])
    return round(max(clean - row["category_p_at_10"] for kind, row in robustness.items() if kind != "clean"), 4)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


ROBUSTNESS_PRODUCTS = 150  # the perturbed queries: a fixed subset (every perturbation is one API call each)


def score_api(
    folder: Path, manifest: dict, limit: int | None, perturbations=PERTURBATIONS, added: set[str] = frozenset()
) -> dict:
    from catalog.images import read_image
    from catalog.models import Product

    api = Api()
    by_sku = dict(Product.objects.values_list("sku", "id"))
    skus = [s for s in sorted(manifest["products"]) if s in by_sku][: limit or None]
    cat = {by_sku[s]: manifest["products"][s]["category"] for s in manifest["products"] if s in by_sku}
    colour = {by_sku[s]: manifest["products"][s]["colour"] for s in manifest["products"] if s in by_sku}
    rng = np.random.default_rng(0)
    robustness: dict[str, dict] = {}
    timings = []
    for kind in perturbations:
        found, truth = [], []
        for sku in skus if kind == "clean" else skus[:ROBUSTNESS_PRODUCTS]:
            info = manifest["products"][sku]
            data = (folder / "queries" / info["query"]).read_bytes()
            if kind != "clean":
                rgb = np.asarray(read_image(data).image)
                dark = np.asarray(read_image((folder / "queries" / info["query_dark"]).read_bytes()).image)
                data = _png(perturb(rgb, kind, rng, opposite=dark))
            t = time.perf_counter()
            found.append(api.search(data, info["query"]))
            timings.append(time.perf_counter() - t)
            truth.append(by_sku[sku])
        row = _hits(found, truth)
        if kind == "clean":  # the same subset as the perturbations, for comparing
            row["subset"] = _hits(found[:ROBUSTNESS_PRODUCTS], truth[:ROBUSTNESS_PRODUCTS])
        shares = [np.mean([cat[q] == cat[t] for q in f[:10]]) for f, t in zip(found, truth)]
        row["category_p_at_10"] = round(float(np.mean(shares)), 4)
        if kind == "clean":
            row["subset"]["category_p_at_10"] = round(float(np.mean(shares[:ROBUSTNESS_PRODUCTS])), 4)
        robustness[kind] = row
        log(f"photo search, {kind}: {row}")
        if kind == "clean" and added:
            new = [sku in added for sku in skus]
            split = {
                name: _hits([f for f, a in zip(found, new) if a == want], [t for t, a in zip(truth, new) if a == want])
                for name, want in (("added_after_training", True), ("trained_on", False))
            }
    found, truth = [], []
    for sku in skus[: 2 * ROBUSTNESS_PRODUCTS]:
        name = manifest["products"][sku]["images"][0]
        found.append(api.search((folder / "images" / name).read_bytes(), name))
        truth.append(by_sku[sku])
    reupload = _hits(found, truth)
    log(f"catalogue image re-uploaded: {reupload}")
    neighbours = {by_sku[s]: api.similar(by_sku[s]) for s in skus}
    similar = similar_shares(neighbours, {p: cat[p] for p in cat}, colour)
    similar["ceiling"] = similar_shares({p: [] for p in cat}, cat, colour)["ceiling"]
    log(f"similar items: {similar}")
    by_training = None
    if added:
        by_training = {}
        for name, want in (("added_after_training", True), ("trained_on", False)):
            ids = {by_sku[s] for s in skus if (s in added) == want}
            shares = similar_shares({p: neighbours[p] for p in ids}, cat, colour)
            by_training[name] = {
                "products": len(ids),
                "held_out": split[name],
                "similar_same_category": shares["same_category"],
                "similar_same_category_and_colour": shares["same_category_and_colour"],
            }
        log(f"added after training vs trained on: {by_training}")
    return {
        "by_training": by_training,
        "held_out": robustness["clean"],
        "robustness": robustness,
        "reupload": reupload,
        "similar": similar,
        "api_search_p50_ms": round(float(np.median(timings) * 1000), 1),
    }


# --- 3b. shopper photos: the item on a surface among other things (bench/shopper_photos.py) ----------

SHOPPER_MARGIN = 0.05  # a hand-drawn box: the true item box grown by 5% of its side


def score_shopper(folder: Path, manifest: dict, version_id: int, limit: int | None) -> dict:
    """Each product photographed as a shopper would, searched three ways through the JSON API: the
    whole photo (crop=none), the box Lookalike finds (crop=auto, the default), and the true item box
    (+5%, a hand-drawn box); and the IoU of the box the API reports searching with the true box."""
    from bench.shopper_photos import with_margin, write_shopper_photos
    from catalog.fashion_mnist import CLASS_NAMES, load_split
    from catalog.models import Product
    from ml.localiser import iou
    from ml.models import ModelVersion
    from ml.proposals import MARGIN

    version = ModelVersion.objects.get(pk=version_id)
    by_sku = dict(Product.objects.values_list("sku", "id"))
    skus = [s for s in sorted(manifest["products"]) if s in by_sku][: limit or None]
    out = folder / "shopper"
    shop = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    if shop.get("n_products") != manifest["n_products"] or set(shop.get("photos", {})) != set(skus):
        shapes, labels = load_split("test")
        shop = write_shopper_photos(
            out, shapes, labels, CLASS_NAMES, n_products=manifest["n_products"], seed=manifest["seed"], skus=set(skus)
        )
    cat = {by_sku[s]: manifest["products"][s]["category"] for s in manifest["products"] if s in by_sku}
    api = Api()
    found: dict[str, list] = {"whole": [], "proposed_box": [], "true_box": []}
    truth, ious, n_boxes, api_ms = [], [], [], []
    for sku in skus:
        photo = shop["photos"][sku]
        data = (out / photo["file"]).read_bytes()
        w, h = photo["size"]
        true = with_margin(photo["box"], w, h, SHOPPER_MARGIN)
        found["whole"].append(api.search(data, photo["file"], crop="none"))
        found["true_box"].append(api.search(data, photo["file"], crop=",".join(map(str, true))))
        t = time.perf_counter()
        answer = api.search_json(data, photo["file"])  # crop=auto: what a shopper gets
        api_ms.append((time.perf_counter() - t) * 1000)
        found["proposed_box"].append([r["id"] for r in answer["results"]])
        searched = answer["box"]
        n_boxes.append(len(answer["boxes"]))
        # Against the true box with the proposals' own margin (ml.proposals.MARGIN): a perfect proposal scores 1.
        ious.append(iou([searched[k] for k in "xywh"], with_margin(photo["box"], w, h, MARGIN)) if searched else 0.0)
        truth.append(by_sku[sku])
    rows = {}
    for mode, results in found.items():
        row = _hits(results, truth)
        row["category_p_at_10"] = round(
            float(np.mean([np.mean([cat[q] == cat[t] for q in f[:10]]) if f else 0.0 for f, t in zip(results, truth)])),
            4,
        )
        rows[mode] = row
        log(f"shopper photos, {mode}: {row}")
    ious_a = np.array(ious)
    box = {
        "iou_mean": round(float(ious_a.mean()), 4),
        "iou_median": round(float(np.median(ious_a)), 4),
        "share_iou_0_7": round(float((ious_a >= 0.7).mean()), 4),
        "no_box_share": round(float(np.mean(np.array(n_boxes) == 0)), 4),
        "boxes_per_photo": round(float(np.mean(n_boxes)), 2),
        "search_with_localisation_p50_ms": round(float(np.median(api_ms)), 1),
        "ious": [round(float(v), 3) for v in ious_a],
        "proposer": "ml.localiser" if version.metrics.get("localiser") else "ml.proposals (classical)",
    }
    log(f"shopper photos, proposed box: { {k: v for k, v in box.items() if k != 'ious'} }")
    by_surface = {}
    for kind in sorted({shop["photos"][s]["surface"] for s in skus}):
        sel = [i for i, s in enumerate(skus) if shop["photos"][s]["surface"] == kind]
        by_surface[kind] = {
            "n": len(sel),
            "iou_share_0_7": round(float((ious_a[sel] >= 0.7).mean()), 4),
            "proposed_hit_at_1": round(
                float(
                    np.mean([bool(found["proposed_box"][i]) and found["proposed_box"][i][0] == truth[i] for i in sel])
                ),
                4,
            ),
        }
    return {**rows, "box": box, "by_surface": by_surface, "n": len(skus)}


# --- 4. baselines -------------------------------------------------------------------------------


def _pixels(rgb: np.ndarray, size: int = 32) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    v = np.asarray(img, np.float32).reshape(-1) / 255.0
    return v / max(np.linalg.norm(v), 1e-6)


def _histogram(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    q = (rgb.reshape(-1, 3).astype(np.int32) * bins) // 256
    h = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(np.float32)
    h = np.sqrt(h / h.sum())
    return h / max(np.linalg.norm(h), 1e-6)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared L2 distances [len(a), len(b)] without the [a, b, dim] intermediate."""
    return (a**2).sum(1)[:, None] - 2.0 * a @ b.T + (b**2).sum(1)[None]


def baselines(folder: Path, manifest: dict) -> dict:
    """Raw pixels (32x32 RGB, L2) and a colour histogram (8x8x8, Hellinger) joined to pixels, on
    the same photos, products ranked by their closest photo as the API does."""
    from catalog.images import read_image

    skus = sorted(manifest["products"])
    photos, owner = [], []
    for i, sku in enumerate(skus):
        for name in manifest["products"][sku]["images"]:
            photos.append(np.asarray(read_image((folder / "images" / name).read_bytes(), draft=64).image))
            owner.append(i)
    queries = [
        np.asarray(read_image((folder / "queries" / manifest["products"][s]["query"]).read_bytes(), draft=64).image)
        for s in skus
    ]
    owner = np.asarray(owner)
    cat = {i: manifest["products"][s]["category"] for i, s in enumerate(skus)}
    colour = {i: manifest["products"][s]["colour"] for i, s in enumerate(skus)}
    out = {}
    for name, fn in (
        ("raw_pixels", _pixels),
        ("colour_histogram_and_pixels", lambda r: np.concatenate([_pixels(r), _histogram(r)]) / np.sqrt(2)),
    ):
        cv = np.stack([fn(p) for p in photos])
        qv = np.stack([fn(q) for q in queries])
        d = _sq_distances(qv, cv)
        per_product = np.full((len(skus), len(skus)), np.inf)
        for p in range(len(skus)):
            per_product[:, p] = d[:, owner == p].min(1)
        order = np.argsort(per_product, 1)
        found = [list(row[:10]) for row in order]
        hits = _hits(found, list(range(len(skus))))
        dd = _sq_distances(cv, cv)
        neighbours = {}
        for p in range(len(skus)):
            row = dd[owner == p].min(0)
            best = np.array([row[owner == q].min() if q != p else np.inf for q in range(len(skus))])
            neighbours[p] = list(np.argsort(best)[:10])
        out[name] = {"held_out": hits, "similar": similar_shares(neighbours, cat, colour)}
        log(f"baseline {name}: {out[name]}")
    return out


# --- 5. training input: photos against pre-decoded arrays -----------------------------------------


def input_check(folder: Path, manifest: dict, architecture: str, image_size: int) -> dict:
    """Two 2-epoch runs of the default architecture: on the catalogue's files (decoded once, then
    cached) and on the same images pre-decoded into an array; the second epochs compared."""
    import tempfile

    import keras

    from catalog.images import read_image
    from ml.architectures import defaults
    from ml.training import train

    skus = sorted(manifest["products"])
    cats = sorted({manifest["products"][s]["category"] for s in skus})
    paths, labels, groups = [], [], []
    for i, sku in enumerate(skus):
        for name in manifest["products"][sku]["images"]:
            paths.append(str(folder / "images" / name))
            labels.append(cats.index(manifest["products"][sku]["category"]))
            groups.append(i)

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.monotonic() - self.t)

    hp = defaults(architecture, None, image_size=image_size, epochs=2, eval_fraction=0.0)
    runs = {}
    for source in ("photos", "arrays"):
        epochs = Epochs()
        with tempfile.TemporaryDirectory() as workdir:
            started = time.monotonic()
            if source == "photos":
                train(
                    architecture=architecture,
                    hparams=hp,
                    paths=paths,
                    labels=labels,
                    groups=groups,
                    label_names=cats,
                    workdir=workdir,
                    callbacks=[epochs],
                )
            else:
                # Decoded beforehand (outside the timing of the epochs), as an in-memory catalogue would be.
                arrays = np.stack(
                    [np.asarray(read_image(open(p, "rb").read()).image.resize((256, 256))) for p in paths]
                )
                started = time.monotonic()
                train(
                    architecture=architecture,
                    hparams=hp,
                    images=arrays,
                    labels=labels,
                    groups=groups,
                    label_names=cats,
                    workdir=workdir,
                    callbacks=[epochs],
                )
            runs[source] = {
                "epoch_seconds": [round(s, 2) for s in epochs.seconds],
                "run_seconds": round(time.monotonic() - started, 1),
            }
    ratio = runs["photos"]["epoch_seconds"][-1] / max(runs["arrays"]["epoch_seconds"][-1], 1e-6)
    log(f"training input: {runs}; epoch over photos / over arrays = {ratio:.2f}")
    return {**runs, "ratio": round(ratio, 3)}


# --- report -------------------------------------------------------------------------------------


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    rows = [("Lookalike", result["held_out"], result["similar"])] + [
        (name.replace("_", " "), b["held_out"], b["similar"]) for name, b in result["baselines"].items()
    ]
    metrics = [
        ("hit@1", lambda h, s: h["hit_at_1"]),
        ("hit@10", lambda h, s: h["hit_at_10"]),
        ("similar: category", lambda h, s: s["same_category"]),
        ("similar: category+colour", lambda h, s: s["same_category_and_colour"]),
    ]
    xs = np.arange(len(metrics))
    width = 0.8 / len(rows)
    for i, (name, h, s) in enumerate(rows):
        bars = ax1.bar(xs + (i - (len(rows) - 1) / 2) * width, [f(h, s) for _, f in metrics], width, label=name)
        ax1.bar_label(bars, fmt="%.2f", fontsize=6)
    ax1.axhline(result["similar"]["ceiling"], color="grey", linestyle=":", linewidth=1)
    ax1.text(
        len(metrics) - 0.5,
        result["similar"]["ceiling"],
        " category+colour ceiling",
        fontsize=7,
        ha="right",
        va="bottom",
    )
    ax1.axhline(TARGETS["hit_at_1"], color="#c92a2a", linestyle="--", linewidth=1)
    ax1.set_xticks(xs, [m for m, _ in metrics], fontsize=8)
    ax1.set_ylim(0, 1.05)
    ax1.set_title(f"Photo catalogue ({result['catalogue']['products']} products)", fontsize=10)
    ax1.legend(fontsize=7, loc="upper right")
    kinds = list(result["robustness"])
    ax2.bar(np.arange(len(kinds)), [result["robustness"][k]["hit_at_1"] for k in kinds], color="#3b5bdb", label="hit@1")
    ax2.plot(
        np.arange(len(kinds)),
        [result["robustness"][k]["category_p_at_10"] for k in kinds],
        "o",
        color="#e8590c",
        label="category P@10",
    )
    ax2.set_xticks(np.arange(len(kinds)), [k.replace("_", " ") for k in kinds], rotation=35, ha="right", fontsize=7)
    ax2.set_ylim(0, 1.05)
    ax2.set_title("Held-out photos, perturbed", fontsize=10)
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_shopper(shopper: dict, path: Path) -> None:
    """Shopper photos: hit@1, hit@10 and category P@10 per way of searching, and the box IoU histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    modes = [("whole", "whole photo"), ("proposed_box", "crop=auto"), ("true_box", "true box + 5%")]
    metrics = [("hit_at_1", "hit@1"), ("hit_at_10", "hit@10"), ("category_p_at_10", "category P@10")]
    xs = np.arange(len(metrics))
    for i, (key, name) in enumerate(modes):
        bars = ax1.bar(xs + (i - 1) * 0.27, [shopper[key][m] for m, _ in metrics], 0.27, label=name)
        ax1.bar_label(bars, fmt="%.2f", fontsize=7)
    ax1.axhline(SHOPPER_TARGETS["proposed_hit_at_1"], color="#c92a2a", linestyle="--", linewidth=1)
    ax1.set_xticks(xs, [label for _, label in metrics])
    ax1.set_ylim(0, 1.05)
    ax1.set_title(f"Shopper photos ({shopper['n']}), searched through the API", fontsize=10)
    ax1.legend(fontsize=7, loc="upper left")
    ious = np.array(shopper["box"]["ious"])
    ax2.hist(ious, bins=np.linspace(0, 1, 21), color="#3b5bdb")
    ax2.axvline(0.7, color="#c92a2a", linestyle="--", linewidth=1)
    ax2.set_xlabel("IoU of the searched box with the true item box")
    ax2.set_title(f"crop=auto boxes: {100 * shopper['box']['share_iou_0_7']:.0f}% at IoU >= 0.7", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SHOPPER_TARGETS = {
    "proposed_hit_at_1": 0.80,
    "proposed_hit_at_10": 0.95,
    "proposed_category_p_at_10": 0.85,
    "true_box_hit_at_1": 0.90,
    "iou_share_0_7": 0.90,
    "search_p50_ms": 150.0,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="another catalogue (its own var/ folders)")
    parser.add_argument("--quick", action="store_true", help="120 products, 4 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (not for figures)")
    parser.add_argument("--skip-input-check", action="store_true")
    parser.add_argument(
        "--label", help="write bench/results/photos_<label>.json (another catalogue's run, e.g. --seed 8)"
    )
    parser.add_argument("--variant", default="", help="its own var/ folders (another size or training setting)")
    parser.add_argument("--localiser", choices=("on", "off"), help="train_model --localiser (default: hparams)")
    parser.add_argument("--scene-views", type=float, help="train_model --scene-views")
    parser.add_argument("--shopper", action="store_true", help="add the shopper-photo section")
    parser.add_argument(
        "--added-after", type=int, default=0, metavar="N", help="import the last N products after training"
    )
    parser.add_argument(
        "--only-shopper",
        action="store_true",
        help="held-out photos, similar items and shopper photos only (no robustness, baselines, input check)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.products, args.epochs = 120, args.epochs or 4
    shopper = args.shopper or args.only_shopper
    train_options = {
        **({"localiser": args.localiser} if args.localiser else {}),
        **({"scene_views": args.scene_views} if args.scene_views is not None else {}),
    }
    started = time.monotonic()
    folder = ROOT / "var" / f"{_tag(args.quick, args.seed, args.variant)}-catalogue"
    with LoadSampler() as load:
        manifest = generate(folder, args.products, args.seed)
        django_setup(args.quick, args.seed, args.variant)
        import_seconds = import_catalogue(folder, hold_back=args.added_after)
        log(f"imported in {import_seconds:.0f} s")
        trained = train_default(args.epochs, **train_options)
        log(f"trained: {trained}")
        added = set(import_the_rest(folder)) if args.added_after else set()
        if args.added_after:
            added = added or set(sorted(manifest["products"])[-args.added_after :])  # a rerun: imported before
            log(f"{len(added)} products imported after training")
        index_seconds = index_with_worker(trained["version"], args.quick, args.seed, args.variant)
        scores = score_api(
            folder, manifest, None, perturbations=("clean",) if args.only_shopper else PERTURBATIONS, added=added
        )
        shopper_scores = score_shopper(folder, manifest, trained["version"], None) if shopper else None
        base = {} if args.only_shopper else baselines(folder, manifest)
        check = (
            None
            if args.skip_input_check or args.only_shopper
            else input_check(folder, manifest, trained["architecture"], trained["image_size"])
        )
    better = max([b["held_out"]["hit_at_1"] for b in base.values()] or [0.0])
    better_cell = max([b["similar"]["same_category_and_colour"] for b in base.values()] or [0.0])
    result = {
        "catalogue": {
            "products": args.products,
            "seed": args.seed,
            "catalogue_photos": sum(len(p["images"]) for p in manifest["products"].values()),
        },
        "import_seconds": round(import_seconds, 1),
        "training": trained,
        "index_seconds": round(index_seconds, 1),
        **scores,
        "baselines": base,
        "training_input": check,
        "shopper": shopper_scores,
        "targets": {
            "hit_at_1": {"target": TARGETS["hit_at_1"], "measured": scores["held_out"]["hit_at_1"]},
            "colour_share_of_ceiling": {
                "target": TARGETS["colour_share_of_ceiling"],
                "measured": round(
                    scores["similar"]["same_category_and_colour"] / max(scores["similar"]["ceiling"], 1e-6), 3
                ),
            },
            "reupload_hit_at_1": {"target": TARGETS["reupload_hit_at_1"], "measured": scores["reupload"]["hit_at_1"]},
            "train_minutes_wall": {
                "target": TARGETS["train_minutes"],
                "measured": round(trained["wall_seconds"] / 60, 1),
            },
        },
    }
    if base:
        result["targets"].update(
            {
                "hit_at_1_vs_better_baseline": {
                    "target": TARGETS["vs_baseline"],
                    "measured": round(scores["held_out"]["hit_at_1"] / max(better, 1e-6), 2),
                },
                "colour_vs_better_baseline": {
                    "target": TARGETS["vs_baseline"],
                    "measured": round(scores["similar"]["same_category_and_colour"] / max(better_cell, 1e-6), 2),
                },
            }
        )
    if not args.only_shopper:
        result["targets"].update(
            {
                "input_epoch_ratio": {"target": 1.3, "measured": check["ratio"] if check else None},
                # Each perturbation against the clean figure of the same queries (its subset).
                "robustness_largest_category_drop": {"target": 0.08, "measured": robustness_drop(scores["robustness"])},
            }
        )
    if scores["by_training"]:
        split = scores["by_training"]
        gap = split["trained_on"]["held_out"]["hit_at_1"] - split["added_after_training"]["held_out"]["hit_at_1"]
        result["targets"]["added_after_training_hit_at_1_below_trained_on"] = {
            "target": 0.03,
            "measured": round(gap, 4),
        }
    if shopper_scores:
        sp = shopper_scores
        result["targets"].update(
            {
                "shopper_proposed_box_hit_at_1": {
                    "target": SHOPPER_TARGETS["proposed_hit_at_1"],
                    "measured": sp["proposed_box"]["hit_at_1"],
                },
                "shopper_proposed_box_hit_at_10": {
                    "target": SHOPPER_TARGETS["proposed_hit_at_10"],
                    "measured": sp["proposed_box"]["hit_at_10"],
                },
                "shopper_proposed_box_category_p_at_10": {
                    "target": SHOPPER_TARGETS["proposed_category_p_at_10"],
                    "measured": sp["proposed_box"]["category_p_at_10"],
                },
                "shopper_true_box_hit_at_1": {
                    "target": SHOPPER_TARGETS["true_box_hit_at_1"],
                    "measured": sp["true_box"]["hit_at_1"],
                },
                "shopper_box_iou_0_7_share": {
                    "target": SHOPPER_TARGETS["iou_share_0_7"],
                    "measured": sp["box"]["share_iou_0_7"],
                },
                "shopper_search_p50_ms_with_localisation": {
                    "target": SHOPPER_TARGETS["search_p50_ms"],
                    "measured": sp["box"]["search_with_localisation_p50_ms"],
                },
            }
        )
    path = write_report(
        "photos" + (f"_{args.label}" if args.label else ""),
        quick=args.quick,
        argv=sys.argv[1:] if argv is None else argv,
        started=started,
        load=load.summary(),
        **result,
    )
    if not args.only_shopper:
        plot(result, path.with_suffix(".png"))
    if shopper_scores:
        plot_shopper(shopper_scores, path.with_name(path.stem + "_shopper.png"))
    rows = [{"name": "Lookalike", **scores["held_out"], **scores["similar"]}] + [
        {"name": n, **b["held_out"], **b["similar"]} for n, b in base.items()
    ]
    print()
    print(
        table(
            rows,
            [
                ("name", "", ""),
                ("hit_at_1", "hit@1", ".3f"),
                ("hit_at_10", "hit@10", ".3f"),
                ("same_category", "similar: cat", ".3f"),
                ("same_category_and_colour", "cat+colour", ".3f"),
                ("ceiling", "ceiling", ".3f"),
            ],
        )
    )
    print()
    print(
        table(
            [{"name": k, **v} for k, v in scores["robustness"].items()],
            [
                ("name", "perturbation", ""),
                ("hit_at_1", "hit@1", ".3f"),
                ("hit_at_10", "hit@10", ".3f"),
                ("category_p_at_10", "category P@10", ".3f"),
            ],
        )
    )
    if shopper_scores:
        print()
        print(
            table(
                [{"name": k, **shopper_scores[k]} for k in ("whole", "proposed_box", "true_box")],
                [
                    ("name", "shopper photo", ""),
                    ("hit_at_1", "hit@1", ".3f"),
                    ("hit_at_10", "hit@10", ".3f"),
                    ("category_p_at_10", "category P@10", ".3f"),
                ],
            )
        )
        print(f"proposed box: { {k: v for k, v in shopper_scores['box'].items() if k != 'ious'} }")
    print()
    print(
        table(
            [{"name": k, **v} for k, v in result["targets"].items()],
            [("name", "target", ""), ("target", "wanted", ".2f"), ("measured", "measured", ".3f")],
        )
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
