"""Validation report of a loaded dataset: what a person should look at before training on it.

:func:`write_report` writes to one folder:

* ``report.md`` -- per-class instance counts, instances per image, mask areas (COCO small / medium /
  large), and every finding: invalid items (degenerate polygons: < 3 points, zero area, NaN ...),
  instances reaching outside the image, images without instances, duplicate images (same bytes),
  skipped and adjusted items;
* ``report.json`` -- the same as data;
* ``mask_areas.png`` -- histogram of mask areas per class (log scale, COCO size limits marked);
* ``instances_per_image.png`` -- bar chart;
* ``overlays.png`` -- a grid of ground-truth overlays drawn by Detectron2's Visualizer on the images
  as Detectron2 reads them (EXIF applied), so a rotated or shifted annotation shows at once.

Load the data with ``strict=False`` (``read_dataset(..., strict=False)``) so every invalid item is
collected instead of the first one raised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from pycocotools import mask as mask_util

from .loading import LoadResult, progress

__all__ = ["build_report", "write_report", "DEGENERATE_KINDS", "SMALL_AREA", "LARGE_AREA"]

logger = logging.getLogger(__name__)

DEGENERATE_KINDS = ("fewer than 3 points", "zero area", "NaN coordinate", "invalid points")
SMALL_AREA, LARGE_AREA = 32 ** 2, 96 ** 2  # COCO's APs / APm / APl limits
_OUTSIDE_SLACK = 0.5  # px beyond the border before a shape counts as reaching outside
_MAX_LISTED = 50  # findings listed per kind in report.md (all of them are in report.json)
_OVERLAY_WIDTH = 320


# ------------------------------------------------------------------------------------------ checks


def _areas(d: dict) -> list[float]:
    h, w = d["height"], d["width"]
    out = []
    for ann in d["annotations"]:
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            rle = {"size": seg["size"], "counts": str(seg["counts"]).encode("ascii")}
        else:
            rle = mask_util.merge(mask_util.frPyObjects([list(map(float, p)) for p in seg], h, w))
        out.append(float(mask_util.area(rle)))
    return out


def _outside(d: dict, name: str, classes: list[str]) -> list[dict]:
    """Polygon instances with a vertex beyond the image (their box was clipped)."""
    found = []
    for k, ann in enumerate(d["annotations"]):
        if isinstance(ann["segmentation"], dict):
            continue  # a raster cannot reach outside
        pts = np.concatenate([np.reshape(np.asarray(p, dtype=np.float64), (-1, 2))
                              for p in ann["segmentation"]])
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        if x0 < -_OUTSIDE_SLACK or y0 < -_OUTSIDE_SLACK or x1 > d["width"] + _OUTSIDE_SLACK or \
                y1 > d["height"] + _OUTSIDE_SLACK:
            found.append({"image": name, "instance": k, "class": classes[ann["category_id"]],
                          "extent": [round(float(v), 1) for v in (x0, y0, x1, y1)],
                          "size": [d["width"], d["height"]]})
    return found


def _duplicates(dicts: list[dict], names: list[str]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for d, name in zip(progress(dicts, desc="hashing images"), names):
        with open(d["file_name"], "rb") as f:
            by_hash[hashlib.sha1(f.read()).hexdigest()].append(name)
    return sorted(sorted(group) for group in by_hash.values() if len(group) > 1)


def _display_names(dicts: list[dict]) -> list[str]:
    files = [os.path.abspath(d["file_name"]) for d in dicts]
    if not files:
        return []
    base = os.path.commonpath([os.path.dirname(f) for f in files])
    return [Path(os.path.relpath(f, base)).as_posix() for f in files]


def build_report(result: LoadResult) -> dict:
    """Compute the report's findings (no files written).

    Args:
        result (LoadResult): a (preferably lenient, ``strict=False``) load.

    Returns:
        dict: counts, statistics and findings (see :func:`write_report` for the keys).
    """
    dicts, classes = result.dicts, result.thing_classes
    names = _display_names(dicts)
    per_class = Counter(classes[a["category_id"]] for d in dicts for a in d["annotations"])
    per_image = [len(d["annotations"]) for d in dicts]
    areas_by_class: dict[str, list[float]] = defaultdict(list)
    for d in progress(dicts, desc="mask areas"):
        for ann, area in zip(d["annotations"], _areas(d)):
            areas_by_class[classes[ann["category_id"]]].append(area)
    areas = np.array([a for v in areas_by_class.values() for a in v]) if per_class else np.zeros(0)
    problems: dict[str, list[str]] = defaultdict(list)
    for kind, msg in result.problems:
        problems[kind].append(msg)
    return {
        "format": result.format,
        "num_images": len(dicts),
        "num_instances": int(sum(per_image)),
        "classes": {c: per_class.get(c, 0) for c in classes},
        "instances_per_image": {
            "min": min(per_image, default=0),
            "mean": round(float(np.mean(per_image)), 2) if per_image else 0.0,
            "max": max(per_image, default=0),
            "histogram": {str(k): v for k, v in sorted(Counter(per_image).items())},
        },
        "mask_area": {
            "min": float(areas.min()) if areas.size else 0.0,
            "median": float(np.median(areas)) if areas.size else 0.0,
            "max": float(areas.max()) if areas.size else 0.0,
            "small": int((areas < SMALL_AREA).sum()),
            "medium": int(((areas >= SMALL_AREA) & (areas < LARGE_AREA)).sum()),
            "large": int((areas >= LARGE_AREA).sum()),
        },
        "degenerate_polygons": [m for k in DEGENERATE_KINDS for m in problems.get(k, [])],
        "problems": dict(problems),
        "outside_image": [f for d, n in zip(dicts, names) for f in _outside(d, n, classes)],
        "empty_images": [n for d, n in zip(dicts, names) if not d["annotations"]],
        "duplicate_images": _duplicates(dicts, names),
        "skipped": dict(result.skipped),
        "adjusted": dict(result.adjusted),
        "_areas": {c: v for c, v in areas_by_class.items()},
    }


# ------------------------------------------------------------------------------------------- plots


def _axes(width: float, height: float) -> tuple[Any, Any]:
    """A new (figure, axes) pair of ``width`` x ``height`` inches."""
    from matplotlib.figure import Figure  # heavy: only when a report is drawn (Figure, not pyplot: no global state)

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _plot_areas(areas_by_class: dict[str, list[float]], path: Path) -> None:
    fig, ax = _axes(7, 4)
    values = [v for v in areas_by_class.values() if v]
    if values:
        low, top = max(min(min(v) for v in values) / 1.5, 1.0), max(max(v) for v in values)
        bins = np.logspace(np.log10(low), np.log10(max(top, low * 10)) + 0.01, 40)
        ax.hist([np.maximum(v, 1.0) for v in values], bins=bins, stacked=True,
                label=[c for c, v in areas_by_class.items() if v])
        ax.legend()
    for limit, text in ((SMALL_AREA, "small | medium"), (LARGE_AREA, "medium | large")):
        ax.axvline(limit, color="grey", linestyle="--", linewidth=1)
        ax.text(limit, ax.get_ylim()[1] * 0.95, f" {text}", fontsize=8, color="grey", va="top")
    ax.set_xscale("log")
    ax.set(xlabel="mask area (pixels², log scale)", ylabel="instances", title="Mask areas per class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_per_image(histogram: dict[str, int], path: Path) -> None:
    fig, ax = _axes(7, 3.5)
    ax.bar([int(k) for k in histogram], list(histogram.values()), color="tab:blue")
    ax.set(xlabel="instances in the image", ylabel="images", title="Instances per image")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _overlay_grid(result: LoadResult, path: Path, max_images: int, columns: int = 4) -> int:
    """Draw GT on up to ``max_images`` images (the most crowded first) into one PNG; returns the count."""
    from detectron2.utils.visualizer import Visualizer  # heavy (matplotlib): only when overlays are drawn

    chosen = sorted(result.dicts, key=lambda d: (-len(d["annotations"]), d["file_name"]))[:max_images]
    if not chosen:
        return 0
    meta = Metadata(name="report", thing_classes=list(result.thing_classes))
    views = []
    for d in chosen:
        rgb = read_image(d["file_name"], format="RGB")  # EXIF applied, as Detectron2 trains on it
        vis = Visualizer(rgb, meta, scale=_OVERLAY_WIDTH / rgb.shape[1])
        views.append(vis.draw_dataset_dict(d).get_image())
    tile_h = max(v.shape[0] for v in views) + 20  # room for the file name under each image
    tiles = []
    for d, view in zip(chosen, views):
        tile = np.full((tile_h, _OVERLAY_WIDTH, 3), 255, np.uint8)
        tile[: view.shape[0], : min(view.shape[1], _OVERLAY_WIDTH)] = view[:, :_OVERLAY_WIDTH]
        label = unicodedata.normalize("NFKD", Path(d["file_name"]).name).encode("ascii", "ignore").decode()
        cv2.putText(tile, label[:40], (4, tile_h - 6), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns and len(tiles) > columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i: i + columns], axis=1) for i in range(0, len(tiles), columns)]
    _, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    path.write_bytes(png.tobytes())
    return len(chosen)


# ------------------------------------------------------------------------------------------ output


def _listing(title: str, items: list[Any]) -> list[str]:
    if not items:
        return [f"### {title}: none", ""]
    lines = [f"### {title}: {len(items)}", ""]
    for item in items[:_MAX_LISTED]:
        lines.append(f"- {item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)}")
    if len(items) > _MAX_LISTED:
        lines.append(f"- ... {len(items) - _MAX_LISTED} more in report.json")
    return lines + [""]


def _markdown(report: dict) -> str:
    ipi, area = report["instances_per_image"], report["mask_area"]
    lines = [f"# Dataset report ({report['format']})", "",
             f"{report['num_images']} images, {report['num_instances']} instances, "
             f"{len(report['classes'])} classes.", "", "| class | instances |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in report["classes"].items()]
    lines += ["", f"Instances per image: min {ipi['min']}, mean {ipi['mean']}, max {ipi['max']} "
              "(instances_per_image.png).",
              f"Mask areas: min {area['min']:.0f}, median {area['median']:.0f}, max {area['max']:.0f} px²; "
              f"{area['small']} small (< 32²), {area['medium']} medium, {area['large']} large (>= 96²) "
              "(mask_areas.png).", "", "Ground-truth overlays: overlays.png.", "", "## Findings", ""]
    other = {k: v for k, v in report["problems"].items() if k not in DEGENERATE_KINDS}
    lines += _listing("Degenerate polygons (< 3 points, zero area, NaN)", report["degenerate_polygons"])
    lines += _listing("Other invalid items", [m for v in other.values() for m in v])
    lines += _listing("Instances reaching outside the image (box clipped)", report["outside_image"])
    lines += _listing("Images without instances", report["empty_images"])
    lines += _listing("Duplicate images (same bytes)", [" = ".join(g) for g in report["duplicate_images"]])
    lines += _listing("Skipped items", [f"{n}× {r}" for r, n in sorted(report["skipped"].items())])
    lines += _listing("Adjusted items", [f"{n}× {r}" for r, n in sorted(report["adjusted"].items())])
    return "\n".join(lines)


def write_report(result: LoadResult, out_dir: str | os.PathLike, max_overlays: int = 16) -> dict:
    """Write the validation report (see the module doc) and return its summary.

    Args:
        result (LoadResult): a (preferably lenient, ``strict=False``) load.
        out_dir (str or PathLike): the report folder (created).
        max_overlays (int): images in ``overlays.png`` (the ones with most instances).

    Returns:
        dict: the report data (as in ``report.json``) plus ``files`` (paths written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    areas = report.pop("_areas")
    files = {name: str(out / name) for name in
             ("report.md", "report.json", "mask_areas.png", "instances_per_image.png", "overlays.png")}
    _plot_areas({c: areas.get(c, []) for c in result.thing_classes}, out / "mask_areas.png")
    _plot_per_image(report["instances_per_image"]["histogram"], out / "instances_per_image.png")
    report["overlays"] = _overlay_grid(result, out / "overlays.png", max_overlays)
    if not report["overlays"]:
        files.pop("overlays.png")
    report["files"] = files
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    logger.info("Wrote the dataset report to %s", out)
    return report
