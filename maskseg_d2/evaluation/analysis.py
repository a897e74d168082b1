"""Error analysis: the images with the most missed and false instances, drawn GT (left) vs prediction.

The GT ``file_name`` values come from a file the user may not have written: an image is only read from
inside ``image_root`` (no ``..``, no absolute path elsewhere). Images that cannot be drawn (outside the
root, missing, unreadable, no file_name) are skipped and counted; the evaluation itself is unaffected.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np

import cv2
import torch
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.structures import Boxes, BoxMode, Instances
from PIL import Image
from pycocotools import mask as mask_util

from ..visualization import draw_gt_vs_pred
from .cocoeval import GroundTruth, Predictions
from .confusion import Confusion, ImageErrors

__all__ = ["SKIP_REASONS", "worst_images", "write_worst_csv", "draw_worst_images", "resolve_image_path"]

SKIP_REASONS = ("no file_name", "outside image_root", "not found", "unreadable")


def worst_images(conf: Confusion, n: int) -> list[ImageErrors]:
    """The ``n`` images with the most errors (missed + false), most missed first on ties; error-free
    images are never listed."""
    ranked = sorted(conf.per_image.values(), key=lambda e: (-e.errors, -e.missed, e.image_id))
    return [e for e in ranked if e.errors > 0][: max(int(n), 0)]


def resolve_image_path(file_name: Any, image_root: str | None) -> tuple[str | None, str]:
    """Where to read a GT image: never outside ``image_root``.

    Args:
        file_name: the GT ``file_name`` value (any JSON value).
        image_root (str or None): the folder file names are relative to. None: names are used as given
            (a run's own dataset, whose paths the importers wrote and checked).

    Returns:
        tuple[str or None, str]: ``(path, "")``, or ``(None, why)`` with ``why`` one of
        :data:`SKIP_REASONS` (``unreadable`` is found only when reading).
    """
    if not isinstance(file_name, str) or not file_name:
        return None, "no file_name"
    path = file_name
    if image_root is not None:
        root = os.path.abspath(image_root)
        # lexical: '..' and absolute names elsewhere are refused, a symlink the user put inside is followed
        path = os.path.abspath(os.path.join(root, file_name))
        try:
            inside = os.path.commonpath([root, path]) == root
        except ValueError:  # another drive (Windows)
            inside = False
        if not inside:
            return None, "outside image_root"
    return (path, "") if os.path.isfile(path) else (None, "not found")


def write_worst_csv(worst: Sequence[ImageErrors], gt: GroundTruth, path: str) -> str:
    images = gt.images
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "image_id", "file_name", "gt", "predictions", "missed", "false"])
        for rank, e in enumerate(worst, start=1):
            w.writerow(
                [
                    rank,
                    e.image_id,
                    images[e.image_id].get("file_name", ""),
                    e.num_gt,
                    e.num_pred,
                    e.missed,
                    e.false,
                ]
            )
    return path


def _record(img: dict, h: int, w: int, anns: list[dict], cat_index: dict[int, int]) -> dict:
    out = []
    for a in anns:
        segm = a.get("segmentation")
        if not segm:
            x, y, w, h = a["bbox"]
            segm = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        out.append(
            {
                "bbox": a["bbox"],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": cat_index[a["category_id"]],
                "segmentation": segm,
                "iscrowd": a.get("iscrowd", 0),
            }
        )
    return {
        "file_name": img.get("file_name", ""),
        "height": h,
        "width": w,
        "image_id": img["id"],
        "annotations": out,
    }


def _instances(dets: list[dict], h: int, w: int, cat_index: dict[int, int], with_masks: bool) -> Instances:
    inst = Instances((h, w))
    boxes = (
        np.array([d["bbox"] for d in dets], dtype=np.float32).reshape(-1, 4)
        if dets and dets[0]["bbox"]
        else np.array([mask_util.toBbox(d["segmentation"]) for d in dets], dtype=np.float32).reshape(-1, 4)
    )
    inst.pred_boxes = Boxes(torch.from_numpy(BoxMode.convert(boxes, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)))
    inst.scores = torch.tensor([d["score"] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([cat_index[d["category_id"]] for d in dets], dtype=torch.int64)
    if with_masks:
        masks = mask_util.decode([d["segmentation"] for d in dets]) if dets else np.zeros((h, w, 0), np.uint8)
        inst.pred_masks = torch.from_numpy(masks.transpose(2, 0, 1).astype(bool))
    return inst


def _caption(canvas: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((28, canvas.shape[1], 3), 255, np.uint8)
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    scale = 0.5 * min(1.0, (canvas.shape[1] - 12) / max(width, 1))  # shrink to fit narrow images
    cv2.putText(bar, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, canvas], axis=0)


def draw_worst_images(
    worst: Sequence[ImageErrors],
    gt: GroundTruth,
    preds: Predictions,
    out_dir: str,
    image_root: str | None = None,
    score_thresh: float = 0.5,
) -> tuple[list[str], list[str]]:
    """Draw each listed image: GT (left) and predictions with score >= ``score_thresh`` (right).

    Args:
        worst (list[ImageErrors]): from :func:`worst_images`.
        gt (GroundTruth): ground truth (image ``file_name`` resolved by :func:`resolve_image_path`).
        preds (Predictions): predictions.
        out_dir (str): PNGs go to ``<out_dir>/<rank>_<image stem>.png``.
        image_root (str or None): folder the GT ``file_name`` values are relative to.
        score_thresh (float): predictions below are not drawn.

    Returns:
        tuple[list[str], dict[str, list[str]]]: the PNGs written, and the images skipped: reason (one of
        :data:`SKIP_REASONS`) -> the file names (``image id N`` without one).
    """
    images, cat_index = gt.images, {c: k for k, c in enumerate(gt.cat_ids)}
    metadata = Metadata(name="evaluation").set(thing_classes=gt.class_names)
    wanted = {e.image_id for e in worst}
    anns = {i: [] for i in wanted}
    dets = {i: [] for i in wanted}
    for a in gt.dataset["annotations"]:
        if a["image_id"] in wanted:
            anns[a["image_id"]].append(a)
    for r in preds.results:
        if r["image_id"] in wanted and r["score"] >= score_thresh:
            dets[r["image_id"]].append(r)
    written, skipped = [], {}
    with_masks = "segm" in preds.tasks
    for rank, e in enumerate(worst, start=1):
        img = images[e.image_id]
        name = img.get("file_name")
        path, why = resolve_image_path(name, image_root)
        item = repr(name)[:200] if why != "no file_name" else f"image id {e.image_id}"
        try:
            rgb = read_image(path, format="RGB") if path else None  # EXIF applied, as in training
        except (OSError, ValueError, Image.DecompressionBombError) as err:  # not an image, truncated, huge
            rgb, why, item = None, "unreadable", f"{item}: {' '.join(str(err).split(' <')[0].split())[:200]}"
        if rgb is None:
            skipped.setdefault(why, []).append(item)
            continue
        h, w = int(img.get("height", rgb.shape[0])), int(img.get("width", rgb.shape[1]))
        if rgb.shape[:2] != (h, w):  # GT made on another size: show it at the GT's size, where masks fit
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        record = _record(img, h, w, anns[e.image_id], cat_index)
        inst = _instances(sorted(dets[e.image_id], key=lambda r: -r["score"]), h, w, cat_index, with_masks)
        canvas = draw_gt_vs_pred(rgb, record, inst, metadata)
        canvas = _caption(
            canvas,
            f"#{rank} image {e.image_id}: {e.missed} missed, {e.false} false "
            f"(left GT, right predictions with score >= {score_thresh:g})",
        )
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, f"{rank:02d}_{os.path.splitext(os.path.basename(path))[0]}.png")
        cv2.imwrite(out, canvas[:, :, ::-1])
        written.append(out)
    return written, skipped
