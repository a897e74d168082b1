"""Synthetic COCO ground truth and detections for tests and benchmarks (no images needed).

:func:`make_synthetic_coco` draws star-shaped polygon objects of every COCO size (small, medium, large),
crowd regions (uncompressed RLE, ``iscrowd=1``), empty images and a category without any ground truth,
plus detections that hit, miss, duplicate, confuse classes and land on crowds, with masks as compressed
RLE or polygons. Everything comes from ``np.random.default_rng(seed)``: same arguments, same data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pycocotools import mask as mask_util

__all__ = ["make_synthetic_coco"]


def _star_polygon(rng: np.random.Generator, cx: float, cy: float, r: float, w: int, h: int) -> list[float]:
    n = int(rng.integers(5, 12))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = r * rng.uniform(0.55, 1.0, n)
    xs = np.clip(cx + radii * np.cos(angles), 0, w)
    ys = np.clip(cy + radii * np.sin(angles), 0, h)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _rle(segm: Any, h: int, w: int) -> dict:
    rles = mask_util.frPyObjects(segm, h, w)
    return mask_util.merge(rles) if isinstance(rles, list) else rles


def _crowd(rng: np.random.Generator, ann_id: int, img: dict, cat_id: int) -> dict:
    h, w = img["height"], img["width"]
    mask = np.zeros((h, w), np.uint8)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    mask[y0 : y0 + int(rng.integers(h // 4, h // 2)), x0 : x0 + int(rng.integers(w // 4, w // 2))] = 1
    flat = mask.flatten(order="F")  # column-major, as COCO RLE
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    rle = mask_util.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
    return {
        "id": ann_id,
        "image_id": img["id"],
        "category_id": cat_id,
        "iscrowd": 1,
        "segmentation": {"counts": counts, "size": [h, w]},
        "area": float(mask_util.area(rle)),
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
    }


def _object(rng: np.random.Generator, img: dict) -> tuple[float, float, float]:
    h, w = img["height"], img["width"]
    r = math.exp(rng.uniform(math.log(3.0), math.log(min(w, h) / 2.2)))  # log-uniform: every COCO size
    return float(rng.uniform(0, w)), float(rng.uniform(0, h)), r


def _jitter(rng: np.random.Generator, poly: list[float], r: float, w: int, h: int) -> list[float]:
    xy = np.asarray(poly, dtype=float).reshape(-1, 2)
    centre = xy.mean(axis=0)
    xy = (xy - centre) * rng.uniform(0.85, 1.15) + centre + rng.normal(0, 0.08 * r, 2)
    xy += rng.normal(0, 0.03 * r, xy.shape)
    xy = np.clip(xy, 0, [w, h])
    return [round(float(v), 2) for v in xy.ravel()]


def _detection(
    rng: np.random.Generator, img: dict, cat_id: int, poly: list[float], score: float, polygon: bool
) -> dict | None:
    h, w = img["height"], img["width"]
    rle = _rle([poly], h, w)
    if mask_util.area(rle) == 0:
        return None
    box = [float(v) for v in mask_util.toBbox(rle)]
    box = [
        box[0] + rng.normal(0, 0.5),
        box[1] + rng.normal(0, 0.5),
        box[2] * rng.uniform(0.95, 1.05),
        box[3] * rng.uniform(0.95, 1.05),
    ]
    if polygon:
        segm: Any = [poly]
    else:
        segm = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return {
        "image_id": img["id"],
        "category_id": cat_id,
        "bbox": [round(float(v), 2) for v in box],
        "score": round(float(score), 5),
        "segmentation": segm,
    }


def make_synthetic_coco(
    num_images: int = 50,
    preds_per_image: float = 20.0,
    seed: int = 0,
    *,
    num_classes: int = 4,
    crowd_fraction: float = 0.03,
    empty_fraction: float = 0.05,
    polygon_fraction: float = 0.0,
    class_without_gt: bool = True,
    small_objects: bool = True,
) -> tuple[dict, list[dict]]:
    """A COCO instances dict and a COCO results list over it.

    Args:
        num_images (int): images (ids 1..N, sizes 160-640 x 120-480 px).
        preds_per_image (float): mean detections per image (Poisson).
        seed (int): RNG seed.
        num_classes (int): categories with ground truth; ids are non-contiguous (2, 4, 6, ...).
        crowd_fraction (float): share of GT instances that are crowd regions (uncompressed RLE).
        empty_fraction (float): share of images without any GT (detections may still land there).
        polygon_fraction (float): share of detections whose mask is a polygon instead of compressed RLE.
        class_without_gt (bool): add one more category ("unused") that has detections but no GT.
        small_objects (bool): False: no object smaller than 32x32 px (APs/ARs undefined).

    Returns:
        tuple[dict, list[dict]]: (ground truth with images/annotations/categories, detections).
    """
    rng = np.random.default_rng(seed)
    cat_ids = [2 * (i + 1) for i in range(num_classes)]
    cats = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in cat_ids]
    if class_without_gt:
        cats.append({"id": 99, "name": "unused", "supercategory": "thing"})
    images, anns, results = [], [], []
    gt_per_image = max(preds_per_image * 0.6, 1.0)
    for img_id in range(1, num_images + 1):
        img = {
            "id": img_id,
            "file_name": f"img_{img_id:05d}.jpg",
            "width": int(rng.integers(160, 641)),
            "height": int(rng.integers(120, 481)),
        }
        images.append(img)
        first = len(anns)
        objs = _image_gt(rng, img, anns, cat_ids, gt_per_image, crowd_fraction, empty_fraction, small_objects)
        crowds = [a for a in anns[first:] if a["iscrowd"]]
        results.extend(_image_dets(rng, img, objs, cats, preds_per_image, polygon_fraction, crowds))
    return {"images": images, "annotations": anns, "categories": cats}, results


def _image_gt(rng, img, anns, cat_ids, gt_per_image, crowd_fraction, empty_fraction, small_objects):
    objs = []
    if rng.random() < empty_fraction:
        return objs
    for _ in range(int(rng.poisson(gt_per_image))):
        cat = int(rng.choice(cat_ids, p=_weights(len(cat_ids))))
        if rng.random() < crowd_fraction:
            anns.append(_crowd(rng, len(anns) + 1, img, cat))
            continue
        cx, cy, r = _object(rng, img)
        if not small_objects:
            r = max(r, 40.0)
        poly = _star_polygon(rng, cx, cy, r, img["width"], img["height"])
        rle = _rle([poly], img["height"], img["width"])
        area = float(mask_util.area(rle))
        if area == 0 or (not small_objects and area < 32**2):
            continue
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": img["id"],
                "category_id": cat,
                "iscrowd": 0,
                "segmentation": [poly],
                "area": area,
                "bbox": [round(float(v), 2) for v in mask_util.toBbox(rle)],
            }
        )
        objs.append((cat, poly, r))
    return objs


def _weights(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)  # imbalanced classes, as in real data
    return w / w.sum()


def _image_dets(rng, img, objs, cats, preds_per_image, polygon_fraction, crowds):
    target = int(rng.poisson(preds_per_image))
    dets: list[dict] = []
    all_cats = [c["id"] for c in cats]
    h, w = img["height"], img["width"]
    for cat, poly, r in objs:
        if len(dets) >= target:
            break
        if rng.random() < 0.85:  # detected; sometimes with the wrong class
            pred_cat = cat if rng.random() < 0.9 else int(rng.choice(all_cats))
            dets.append(_detection(rng, img, pred_cat, _jitter(rng, poly, r, w, h), rng.beta(5, 2),
                                   rng.random() < polygon_fraction))
            if rng.random() < 0.2:  # duplicate
                dets.append(_detection(rng, img, pred_cat, _jitter(rng, poly, r, w, h), rng.beta(2, 5),
                                       rng.random() < polygon_fraction))
    while len(dets) < target:  # false positives, some on crowd regions
        if crowds and rng.random() < 0.3:
            x, y, bw, bh = crowds[0]["bbox"]
            cx, cy, r = x + rng.uniform(0, bw), y + rng.uniform(0, bh), float(rng.uniform(5, 30))
        else:
            cx, cy, r = _object(rng, img)
        dets.append(
            _detection(
                rng,
                img,
                int(rng.choice(all_cats)),
                _star_polygon(rng, cx, cy, r, w, h),
                rng.beta(2, 5),
                rng.random() < polygon_fraction,
            )
        )
    return [d for d in dets if d is not None]
