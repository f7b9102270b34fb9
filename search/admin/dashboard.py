"""Selectors for the admin's model dashboard: versions with their figures, whether they serve,
coverage and a 2-D map of the catalogue's embeddings (PCA with numpy), drawn as inline SVG like
ml/plots.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from catalog.models import Category, ProductImage
from ml.models import ModelVersion

from ..indexing.progress import index_job_status
from ..models import EmbeddingFailure, ImageEmbedding, IndexJob
from ..serving.versions import version_storage
from ..storage import vector_array

MAP_SAMPLE = 2000
# Tableau 10: distinguishable, and readable on white.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


@dataclass
class VersionRow:
    version: ModelVersion
    p_at_1: float | None
    p_at_10: float | None
    map_at_100: float | None
    pixels_p_at_1: float | None
    embedded: int
    failed: int
    total_images: int
    index_job: dict | None
    loss_sparkline: SafeString
    is_active: bool = False

    @property
    def coverage_fraction(self) -> float:
        return (self.embedded + self.failed) / self.total_images if self.total_images else 0.0

    @property
    def busy(self) -> bool:
        """Training or indexing is under way: the row's progress bars poll for updates."""
        job_busy = self.index_job is not None and self.index_job["status"] in IndexJob.UNFINISHED
        return not self.version.is_finished or job_busy


def _figure(holdout: dict, side: str, key: str) -> float | None:
    value = (holdout.get(side) or {}).get(key)
    return value if isinstance(value, (int, float)) else None


def dashboard_versions(*, limit: int = 50) -> list[VersionRow]:
    """The newest model versions with holdout figures, index coverage and latest reindex job.

    Five queries whatever the number of versions.
    """
    versions = list(ModelVersion.objects.select_related("serving").order_by("-id")[:limit])
    ids = [v.pk for v in versions]
    total_images = ProductImage.objects.count()
    embedded = dict(
        ImageEmbedding.objects.filter(model_version_id__in=ids)
        .values("model_version")
        .annotate(n=Count("id"))
        .values_list("model_version", "n")
    )
    failed = dict(
        EmbeddingFailure.objects.filter(model_version_id__in=ids)
        .values("model_version")
        .annotate(n=Count("id"))
        .values_list("model_version", "n")
    )
    jobs: dict[int, IndexJob] = {}
    for job in IndexJob.objects.filter(model_version_id__in=ids).order_by("-id"):
        jobs.setdefault(job.model_version_id, job)
    rows = []
    for v in versions:
        holdout = (v.metrics or {}).get("holdout") or {}
        job = jobs.get(v.pk)
        rows.append(
            VersionRow(
                version=v,
                p_at_1=_figure(holdout, "model", "precision_at_1"),
                p_at_10=_figure(holdout, "model", "precision_at_10"),
                map_at_100=_figure(holdout, "model", "map_at_100"),
                pixels_p_at_1=_figure(holdout, "pixels", "precision_at_1"),
                embedded=embedded.get(v.pk, 0),
                failed=failed.get(v.pk, 0),
                total_images=total_images,
                index_job=None if job is None else index_job_status(job),
                loss_sparkline=loss_sparkline_svg(v.loss_history),
                is_active=bool(getattr(v, "serving", None) and v.serving.is_active),
            )
        )
    return rows


def loss_sparkline_svg(loss_history: list[dict], *, width: int = 110, height: int = 30) -> SafeString:
    """A small loss-per-epoch line for a table cell, first and last values as text beside it."""
    losses = [row.get("loss") for row in loss_history if isinstance(row.get("loss"), (int, float))]
    if not losses:
        return mark_safe('<span class="lk-muted">—</span>')
    lo, hi = min(losses), max(losses)
    span = (hi - lo) or 1.0
    n = len(losses)
    pad = 3
    points = " ".join(
        f"{pad + (i / max(n - 1, 1)) * (width - 2 * pad):.1f},{pad + (1 - (v - lo) / span) * (height - 2 * pad):.1f}"
        for i, v in enumerate(losses)
    )
    dot = points.split(" ")[-1].split(",")
    return format_html(
        '<span class="lk-spark"><svg role="img" aria-label="Training loss from {first} to {last} over {n} epoch{s}" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        '<polyline fill="none" stroke="#3b5bdb" stroke-width="1.8" points="{points}"/>'
        '<circle cx="{cx}" cy="{cy}" r="2.5" fill="#3b5bdb"/></svg>'
        "<small>{first} → {last}</small></span>",
        first=f"{losses[0]:.3g}",
        last=f"{losses[-1]:.3g}",
        n=n,
        s="" if n == 1 else "s",
        w=width,
        h=height,
        points=points,
        cx=dot[0],
        cy=dot[1],
    )


# --- the embedding map ---------------------------------------------------------------------------


@dataclass
class EmbeddingMap:
    model_version: ModelVersion
    sampled: int
    total: int
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    labels: list[str] = field(repr=False)  # category name per point
    explained: tuple[float, float] = (0.0, 0.0)  # variance ratio of the two components

    @property
    def categories(self) -> list[tuple[str, str, int]]:
        """(name, colour, points) per category, largest first; colours repeat after ten."""
        counts: dict[str, int] = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        names = sorted(counts)
        colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
        return [(name, colours[name], counts[name]) for name in sorted(names, key=lambda n: (-counts[n], n))]


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project rows onto their first two principal components (SVD of the centred matrix).

    Returns the (n, 2) coordinates and the fraction of variance each component explains. Signs are
    fixed (largest |loading| positive) so the picture does not flip between reloads.
    """
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"Expected a non-empty 2-D array. Received: shape={vectors.shape}")
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    if components.shape[0] < 2:  # one-dimensional embeddings: the second axis is flat
        components = np.vstack([components, np.zeros_like(components)])
        s = np.concatenate([s, [0.0]])
    for row in components:
        if row.any() and row[np.argmax(np.abs(row))] < 0:
            row *= -1
    coords = centred @ components.T
    variance = s**2
    total = variance.sum() or 1.0
    return coords, (float(variance[0] / total), float(variance[1] / total))


def embedding_map(*, model_version: ModelVersion, sample: int = MAP_SAMPLE, seed: int = 0) -> EmbeddingMap | None:
    """A fixed random sample (≤ `sample`) of the version's image vectors projected to 2-D by PCA,
    with each point's category. None when the version has no vectors.
    """
    rows = ImageEmbedding.objects.filter(model_version=model_version)
    ids = np.fromiter(rows.order_by("id").values_list("id", flat=True).iterator(chunk_size=20000), dtype=np.int64)
    if ids.size == 0:
        return None
    chosen = ids if ids.size <= sample else np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
    column = version_storage(model_version=model_version).column
    picked = list(
        ImageEmbedding.objects.filter(id__in=chosen.tolist()).order_by("id").values_list(column, "category_id")
    )
    names = dict(Category.objects.values_list("id", "name"))
    vectors = np.stack([vector_array(vector) for vector, _ in picked])
    coords, explained = pca_2d(vectors)
    return EmbeddingMap(
        model_version=model_version,
        sampled=len(picked),
        total=int(ids.size),
        x=coords[:, 0],
        y=coords[:, 1],
        labels=[names.get(category_id, "?") for _, category_id in picked],
        explained=explained,
    )


def embedding_map_svg(emap: EmbeddingMap, *, width: int = 720, height: int = 480) -> SafeString:
    """Scatter plot of the map, one colour per category, with a legend on the right."""
    legend_w, pad = 170, 14
    plot_w, plot_h = width - legend_w - 2 * pad, height - 2 * pad
    categories = emap.categories
    colours = {name: colour for name, colour, _ in categories}

    def scale(values: np.ndarray, size: float) -> np.ndarray:
        lo, hi = float(values.min()), float(values.max())
        return (values - lo) / ((hi - lo) or 1.0) * size

    xs = pad + scale(emap.x, plot_w)
    ys = pad + plot_h - scale(emap.y, plot_h)
    # Grouped by category so a legend entry's points are one <g> (with a tooltip for the category).
    groups = []
    for name, colour, count in categories:
        mask = [label == name for label in emap.labels]
        circles = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6"/>' for x, y, m in zip(xs, ys, mask) if m)
        groups.append(
            format_html(
                '<g fill="{}" fill-opacity=".72"><title>{} ({} points)</title>{}</g>',
                colour,
                name,
                count,
                mark_safe(circles),
            )
        )
    legend = format_html_join(
        "",
        '<g transform="translate({},{})"><circle cx="6" cy="-4" r="5" fill="{}"/>'
        '<text x="16" y="0" font-size="12" fill="#333">{} <tspan fill="#888">{}</tspan></text></g>',
        (
            (width - legend_w + 6, pad + 14 + 20 * i, colours[name], name, count)
            for i, (name, _, count) in enumerate(categories)
        ),
    )
    return format_html(
        '<svg class="lk-map" role="img" aria-label="{label}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">'
        '<rect x="{p0}" y="{p0}" width="{pw}" height="{ph}" fill="#fcfcfb" stroke="#e2e2dd"/>'
        "{groups}{legend}"
        '<text x="{lx}" y="{ay}" font-size="11" fill="#777">x: PC1, {e1} of variance</text>'
        '<text x="{lx}" y="{ay2}" font-size="11" fill="#777">y: PC2, {e2} of variance</text>'
        "</svg>",
        label=f"PCA map of {emap.sampled} of {emap.total} vectors of {emap.model_version}, coloured by category",
        w=width,
        h=height,
        p0=pad - 6,
        pw=plot_w + 12,
        ph=plot_h + 12,
        groups=mark_safe("".join(groups)),
        legend=legend,
        lx=width - legend_w + 6,
        ay=pad + 20 * len(categories) + 24,
        ay2=pad + 20 * len(categories) + 40,
        e1=f"{emap.explained[0]:.0%}",
        e2=f"{emap.explained[1]:.0%}",
    )
