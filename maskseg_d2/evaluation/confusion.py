"""Which class is mistaken for which: a confusion matrix at IoU >= 0.5 (with background), and per-image
error counts for the error analysis.

Matching is class-agnostic and greedy, highest score first: each prediction (score >= ``score_thresh``)
takes the unmatched non-crowd GT instance it overlaps most, if that IoU is >= ``iou_thresh``. A prediction
that only overlaps a crowd region is ignored (as in COCO). Row = GT class (+ ``background`` for
predictions that match nothing), column = predicted class (+ ``background`` for GT nobody found).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from tqdm import tqdm

from .cocoeval import GroundTruth, Predictions

__all__ = ["ImageErrors", "Confusion", "confusion_matrix", "gt_rle"]


@dataclass
class ImageErrors:
    """Per-image counts at the confusion matrix's thresholds.

    Attributes:
        image_id (int): COCO image id.
        num_gt (int): non-crowd GT instances.
        num_pred (int): predictions with score >= threshold.
        missed (int): GT instances not found with the right class (not matched, or matched by another class).
        false (int): predictions that are not a right-class match (background or another class).
    """

    image_id: int
    num_gt: int = 0
    num_pred: int = 0
    missed: int = 0
    false: int = 0

    @property
    def errors(self) -> int:
        return self.missed + self.false


@dataclass
class Confusion:
    """Attributes:
    matrix (np.ndarray): (K+1, K+1) int counts; rows GT class, columns predicted class, index K = background.
    labels (list[str]): the K class names + ``background``.
    task (str): ``bbox`` or ``segm`` (which IoU was used).
    iou_thresh (float): IoU needed for a match.
    score_thresh (float): predictions below are not counted.
    per_image (dict[int, ImageErrors]): error counts per image id.
    """

    matrix: np.ndarray
    labels: list[str]
    task: str
    iou_thresh: float
    score_thresh: float
    per_image: dict[int, ImageErrors] = field(default_factory=dict)


def gt_rle(ann: dict, h: int, w: int) -> Any:
    """A GT annotation's mask as RLE (polygons, uncompressed or compressed RLE; no mask -> its box)."""
    segm = ann.get("segmentation")
    if not segm:
        x, y, bw, bh = ann["bbox"]
        segm = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
    if isinstance(segm, list):
        return mask_util.merge(mask_util.frPyObjects(segm, h, w))
    if isinstance(segm.get("counts"), list):
        return mask_util.frPyObjects(segm, h, w)
    return segm


def _ious(task: str, dets: list[dict], gts: list[dict], img: dict) -> np.ndarray:
    crowd = [int(bool(g.get("iscrowd"))) for g in gts]
    if task == "bbox":
        d_objs, g_objs = [d["bbox"] for d in dets], [g["bbox"] for g in gts]
    else:
        h, w = int(img["height"]), int(img["width"])
        d_objs, g_objs = [d["segmentation"] for d in dets], [gt_rle(g, h, w) for g in gts]
    return np.asarray(mask_util.iou(d_objs, g_objs, crowd), dtype=float).reshape(len(dets), len(gts))


def _match(ious: np.ndarray, crowd: np.ndarray, iou_thresh: float) -> tuple[dict[int, int], set[int]]:
    """det index -> gt index, and the det indices ignored because they sit on a crowd region."""
    taken = np.zeros(ious.shape[1], bool)
    matches, ignored = {}, set()
    for d in range(ious.shape[0]):
        row = np.where(crowd | taken, -1.0, ious[d])
        g = int(np.argmax(row)) if row.size else -1
        if g >= 0 and row[g] >= iou_thresh:
            matches[d] = g
            taken[g] = True
        elif crowd.any() and (ious[d][crowd] >= iou_thresh).any():
            ignored.add(d)
    return matches, ignored


def confusion_matrix(
    gt: GroundTruth,
    preds: Predictions,
    task: str = "segm",
    score_thresh: float = 0.5,
    iou_thresh: float = 0.5,
) -> Confusion:
    """Class confusion and per-image errors at one IoU and score threshold.

    Args:
        gt (GroundTruth): checked ground truth.
        preds (Predictions): checked predictions (must support ``task``).
        task (str): ``segm`` (mask IoU) or ``bbox`` (box IoU).
        score_thresh (float): ignore predictions below this score (what a user would display).
        iou_thresh (float): IoU needed for a match.

    Returns:
        Confusion: the matrix and per-image error counts.
    """
    cat_index = {c: k for k, c in enumerate(gt.cat_ids)}
    bg = len(cat_index)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    gts_by_img, dets_by_img = defaultdict(list), defaultdict(list)
    for a in gt.dataset["annotations"]:
        gts_by_img[a["image_id"]].append(a)
    for r in preds.results:
        if r["score"] >= score_thresh:
            dets_by_img[r["image_id"]].append(r)
    per_image = {}
    images = gt.dataset["images"]
    for img in tqdm(images, desc=f"confusion ({task})", unit="img", disable=len(images) < 500):
        gts, dets = gts_by_img.get(img["id"], []), dets_by_img.get(img["id"], [])
        dets = sorted(dets, key=lambda r: -r["score"])  # stable: ties keep file order
        crowd = np.array([bool(g.get("iscrowd")) for g in gts], dtype=bool)
        errs = ImageErrors(img["id"], num_gt=int((~crowd).sum()), num_pred=len(dets))
        matches, ignored = (
            _match(_ious(task, dets, gts, img), crowd, iou_thresh) if gts and dets else ({}, set())
        )
        for d, det in enumerate(dets):
            pred_k = cat_index[det["category_id"]]
            if d in matches:
                gt_k = cat_index[gts[matches[d]]["category_id"]]
                matrix[gt_k, pred_k] += 1
                errs.missed += gt_k != pred_k
                errs.false += gt_k != pred_k
            elif d not in ignored:
                matrix[bg, pred_k] += 1
                errs.false += 1
        found = set(matches.values())
        for g, ann in enumerate(gts):
            if not crowd[g] and g not in found:
                matrix[cat_index[ann["category_id"]], bg] += 1
                errs.missed += 1
        per_image[img["id"]] = errs
    return Confusion(matrix, gt.class_names + ["background"], task, iou_thresh, score_thresh, per_image)
