"""Embedded synthetic demo dataset: cars and sign boards on a campus.

:func:`make_demo_dataset` renders photo-like scenes (textured sky and ground, tree lines and buildings,
lighting gradient, vignetting, blur, sensor noise, JPEG) with 0-4 objects each, and writes the same
instances three ways, shaped like the files the real tools write:

* ``labelstudio.json``: a Label Studio JSON export (polygon, rotated rectangle and brush results);
* ``labelme/<stem>.json``: one LabelMe file per image (polygon, rectangle, circle and mask shapes,
  grouped shapes for sign boards on poles);
* ``truth.json``: COCO instances of the true *visible* masks (RLE), for checking importers.

Geometry uses the **pixel-corner convention** everywhere (Detectron2 / pycocotools): pixel ``(i, j)``
covers ``[j, j+1) x [i, i+1)`` and belongs to a shape when its centre ``(j + 0.5, i + 0.5)`` is inside.
Label Studio percentages are ``100 * x / width``; LabelMe points are the same coordinates in pixels,
except a ``mask`` shape whose two points are the first and last pixel index of its crop (inclusive).

Everything is drawn from ``np.random.default_rng`` seeded by ``seed``, so two runs with the same
arguments write byte-identical files.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util
from tqdm import tqdm

from ..data.coco_rle import mask_to_coco_rle
from ..predict.annotations import (
    labelme_document, labelme_mask, labelme_shape, labelstudio_brush_value, labelstudio_polygon_value,
    labelstudio_rectangle_value,
)
from .objects import CLASSES, DemoObject
from .scene import render_scene

__all__ = ["CATEGORY_IDS", "GENERATOR_VERSION", "make_demo_dataset"]

logger = logging.getLogger(__name__)

CATEGORY_IDS = {"car": 1, "sign board": 2}

GENERATOR_VERSION = 1
JPEG_QUALITY = 92

_FIRST_VARIANT_CYCLE = ("car", "board_rotated", "round_pole", "car", "board_flat", "board_pole")
_SPACED_PREFIXES = ("parking lot", "main gate", "library front", "bus stop", "north campus")
_NON_ASCII_PREFIX = "panneau été"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_BASE_TIME = _dt.datetime(2024, 5, 6, 9, 0, 0)


# ---------------------------------------------------------------------------------- annotations
def _ls_result(obj: DemoObject, rid: str, w: int, h: int) -> dict:
    """One Label Studio result (brushlabels / rectanglelabels / polygonlabels) for an object."""
    if obj.kind == "brush":
        rtype, value = "brushlabels", labelstudio_brush_value(obj.visible_mask, obj.label)
    elif obj.kind == "rectangle":
        rtype, value = "rectanglelabels", labelstudio_rectangle_value(obj.rect, obj.label, w, h)
    else:
        rtype, value = "polygonlabels", labelstudio_polygon_value(obj.polygon, obj.label, w, h)
    # the key order of Label Studio's own JSON export (a prediction result orders them otherwise)
    return {"original_width": w, "original_height": h, "image_rotation": 0, "value": value, "id": rid,
            "from_name": "label", "to_name": "image", "type": rtype, "origin": "manual"}


def _lm_shape(label: str, points: Sequence[Sequence[float]], shape_type: str, group_id: int | None = None,
              mask: str | None = None) -> dict:
    """A LabelMe shape with float points, as LabelMe itself saves them."""
    return labelme_shape(label, [[float(x), float(y)] for x, y in points], shape_type, group_id, mask=mask)


def _labelme_shapes(obj: DemoObject, next_group: int) -> tuple[list[dict], int]:
    """LabelMe shapes of one object and the next free group id."""
    if obj.kind == "brush":
        corners, png = labelme_mask(obj.visible_mask)
        return [_lm_shape(obj.label, corners, "mask", mask=png)], next_group
    if obj.shape == "car":
        return [_lm_shape(obj.label, obj.polygon, "polygon")], next_group
    group = next_group if obj.has_pole else None
    if obj.shape == "round":
        cx, cy, r = obj.circle
        shapes = [_lm_shape(obj.label, [[cx, cy], [cx + r, cy]], "circle", group)]
    elif obj.rect[4] == 0.0:
        x, y, bw, bh, _ = obj.rect
        shapes = [_lm_shape(obj.label, [[x, y], [x + bw, y + bh]], "rectangle", group)]
    else:
        shapes = [_lm_shape(obj.label, obj.board_corners(), "polygon", group)]
    if obj.has_pole:
        x1, y1, x2, y2 = obj.pole
        shapes.append(_lm_shape(obj.label, [[x1, y1], [x2, y2]], "rectangle", group))
        next_group += 1
    return shapes, next_group


def _coco_annotation(obj: DemoObject, ann_id: int, image_id: int) -> dict:
    rle = mask_to_coco_rle(obj.visible_mask)
    return {"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[obj.label], "segmentation": rle,
            "area": float(mask_util.area(rle)), "bbox": [float(v) for v in mask_util.toBbox(rle)],
            "iscrowd": 0,
            "demo": {"shape": obj.shape, "kind": obj.kind, "pole": obj.has_pole,
                     "visible_fraction": round(obj.visible_fraction, 4)}}


# -------------------------------------------------------------------------------------- dataset
def _ls_upload_name(name: str) -> str:
    """The file name Label Studio stores on upload: spaces become '_', non-ASCII is URL-encoded."""
    return urllib.parse.quote(name.replace(" ", "_"))


def _image_names(rng: np.random.Generator, n: int) -> list[str]:
    names = [f"campus_{i + 1:04d}.jpg" for i in range(n)]
    if n == 0:
        return names
    order = rng.permutation(n)
    odd = int(order[0])
    names[odd] = f"{_NON_ASCII_PREFIX} {odd + 1:04d}.jpg"
    n_spaced = max(1, round(n / 10)) if n >= 2 else 0
    for i in order[1 : 1 + n_spaced]:
        names[int(i)] = f"{_SPACED_PREFIXES[int(rng.integers(len(_SPACED_PREFIXES)))]} {int(i) + 1:04d}.jpg"
    return names


def _timestamp(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ls_task(task_id: int, upload: str, results: list[dict], rng: np.random.Generator) -> dict:
    created = _BASE_TIME + _dt.timedelta(seconds=37 * task_id, microseconds=int(rng.integers(1_000_000)))
    lead = round(float(rng.uniform(4.0, 95.0)), 3)
    done = created + _dt.timedelta(hours=2, seconds=lead + 60 * task_id)
    annotation = {
        "id": 1000 + task_id, "completed_by": 1, "result": results, "was_cancelled": False,
        "ground_truth": False, "created_at": _timestamp(done), "updated_at": _timestamp(done),
        "lead_time": lead, "prediction": {}, "result_count": len(results), "task": task_id, "project": 1,
        "parent_prediction": None, "parent_annotation": None,
    }
    return {
        "id": task_id, "annotations": [annotation], "file_upload": upload, "drafts": [], "predictions": [],
        "data": {"image": f"/data/upload/1/{upload}"}, "meta": {}, "created_at": _timestamp(created),
        "updated_at": _timestamp(done), "inner_id": task_id, "total_annotations": 1,
        "cancelled_annotations": 0, "total_predictions": 0, "project": 1, "updated_by": None,
    }


def _result_id(rng: np.random.Generator) -> str:
    return "".join(_ID_ALPHABET[i] for i in rng.integers(len(_ID_ALPHABET), size=10))


def _write_json(path: Path, obj, indent: int | None = None) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def _scene_plan(rng: np.random.Generator, n: int) -> list[tuple[int, tuple[str, ...]]]:
    """Per image: how many objects to try and the forced first variant (so every type shows up early)."""
    negatives = set(rng.permutation(n)[: max(1, round(n / 12)) if n >= 2 else 0].tolist())
    plan, k = [], 0
    for i in range(n):
        if i in negatives:
            plan.append((0, ()))
        else:
            plan.append((int(rng.integers(1, 5)), (_FIRST_VARIANT_CYCLE[k % len(_FIRST_VARIANT_CYCLE)],)))
            k += 1
    return plan


def _remove_stale(folder: Path, pattern: str, keep: set[str]) -> None:
    for path in folder.glob(pattern):
        if path.name not in keep:
            path.unlink()


def make_demo_dataset(out_dir: str | Path, num_images: int = 80, width: int = 256, height: int = 192,
                      seed: int = 0) -> dict:
    """Render the demo dataset and write Label Studio, LabelMe and COCO-truth annotations.

    Writes ``images/*.jpg``, ``labelstudio.json``, ``labelme/<stem>.json``, ``truth.json`` and
    ``demo_params.json`` (parameters and summary) under ``out_dir``. When ``out_dir`` already holds a
    demo dataset (``demo_params.json``), images and LabelMe files of the old one that the new one does
    not write are removed.

    Args:
        out_dir (str | Path): output folder (created).
        num_images (int): number of images.
        width (int): image width in pixels.
        height (int): image height in pixels.
        seed (int): random seed; same arguments give byte-identical files.

    Returns:
        dict: summary with ``num_images``, ``num_negative``, ``instances`` (per class),
        ``labelstudio_types`` and ``labelme_types`` (counts per result / shape type), ``groups``.
    """
    if num_images < 1 or width < 32 or height < 32:
        raise ValueError(f"need num_images >= 1 and images of at least 32x32, got {num_images}, "
                         f"{width}x{height}")
    out = Path(out_dir)
    had_demo = (out / "demo_params.json").exists()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labelme").mkdir(parents=True, exist_ok=True)
    meta_rng = np.random.default_rng([seed, 2**31 - 1])
    names = _image_names(meta_rng, num_images)
    plan = _scene_plan(meta_rng, num_images)
    summary = {"num_images": num_images, "num_negative": 0, "instances": {c: 0 for c in CLASSES},
               "labelstudio_types": {t: 0 for t in ("polygonlabels", "rectanglelabels", "brushlabels")},
               "labelme_types": {t: 0 for t in ("polygon", "rectangle", "circle", "mask")}, "groups": 0}
    tasks, coco_images, coco_anns = [], [], []
    for idx in tqdm(range(num_images), desc="demo dataset", unit="img"):
        name, (n_obj, variants) = names[idx], plan[idx]
        image, objects = render_scene(np.random.default_rng([seed, idx]), width, height,
                                      num_objects=n_obj, variants=variants)
        ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cv2.imencode failed for {name}")
        (out / "images" / name).write_bytes(jpg.tobytes())  # write_bytes: non-ASCII paths work everywhere
        results, shapes, group = [], [], 1
        for obj in objects:
            results.append(_ls_result(obj, _result_id(meta_rng), width, height))
            obj_shapes, group = _labelme_shapes(obj, group)
            shapes += obj_shapes
            coco_anns.append(_coco_annotation(obj, len(coco_anns) + 1, idx + 1))
            summary["instances"][obj.label] += 1
            summary["labelstudio_types"][results[-1]["type"]] += 1
        for s in shapes:
            summary["labelme_types"][s["shape_type"]] += 1
        summary["groups"] += group - 1
        summary["num_negative"] += not objects
        upload = f"{int(meta_rng.integers(2**32)):08x}-{_ls_upload_name(name)}"
        tasks.append(_ls_task(idx + 1, upload, results, meta_rng))
        _write_json(out / "labelme" / f"{Path(name).stem}.json",
                    labelme_document(shapes, f"../images/{name}", height, width), indent=2)
        coco_images.append({"id": idx + 1, "file_name": name, "width": width, "height": height})
    _write_json(out / "labelstudio.json", tasks)
    categories = [{"id": CATEGORY_IDS[c], "name": c, "supercategory": "campus"} for c in CLASSES]
    truth = {"images": coco_images, "annotations": coco_anns, "categories": categories}
    _write_json(out / "truth.json", truth)
    if had_demo:
        _remove_stale(out / "images", "*.jpg", set(names))
        _remove_stale(out / "labelme", "*.json", {f"{Path(n).stem}.json" for n in names})
    params = {"generator": "maskseg_d2.demo", "version": GENERATOR_VERSION, "num_images": num_images,
              "width": width, "height": height, "seed": seed}
    _write_json(out / "demo_params.json", {**params, "summary": summary}, indent=2)
    logger.info("demo dataset: %d images, %s instances in %s", num_images, summary["instances"], out)
    return summary
