"""Does the exported model predict what the eager one does? Instances matched per image, measured against
:class:`Tolerances`, printed as a table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tabulate import tabulate

from ..predict import Detections, read_bgr
from .runtime import EagerModel, ExportedModel

__all__ = ["Tolerances", "compare_detections", "compare_models", "format_comparison"]


@dataclass
class Tolerances:
    """What "the exported model predicts the same" means, per matched instance.

    The masks are checked on the network's mask probabilities, not on the IoU of the pasted binary masks
    (printed too): where a probability sits at the 0.5 threshold, as everywhere in an untrained mask head,
    a 1e-7 difference flips pixels, so a mask IoU bound would judge the threshold, not the export.

    Attributes:
        box_iou (float): minimum box IoU.
        score (float): maximum absolute score difference.
        mask_prob (float): maximum absolute difference of the in-box mask probabilities.
    """

    box_iou: float = 0.99
    score: float = 1e-3
    mask_prob: float = 1e-3


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)  # two empty boxes: identical


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_detections(ref: Detections, other: Detections, min_iou: float = 0.5,
                       ref_probs: np.ndarray | None = None, other_probs: np.ndarray | None = None) -> dict[str, Any]:
    """Match two predictions of one image and measure how far apart they are.

    Greedy matching in ``ref``'s score order: each instance takes the unmatched ``other`` instance of the
    same class with the highest box IoU (at least ``min_iou``). Index order is not trusted: two near-equal
    scores may swap places between back ends.

    Args:
        ref (Detections): the reference (eager) prediction.
        other (Detections): the prediction to check.
        min_iou (float): box IoU below which two instances are not a match.
        ref_probs, other_probs (np.ndarray or None): (N, M, M) in-box mask probabilities of each side
            (``detect()`` of the models), for ``max_mask_prob_diff``.

    Returns:
        dict: ``ref``, ``other`` (instance counts), ``matched``, ``min_box_iou``, ``min_mask_iou``,
        ``max_mask_prob_diff``, ``max_score_diff``, ``max_box_diff_px`` (None when nothing matched).
    """
    ious = _box_iou(ref.boxes.astype(np.float64), other.boxes.astype(np.float64))
    used, pairs = set(), []
    for i in np.argsort(-ref.scores, kind="stable"):
        cand = [j for j in np.argsort(-ious[i], kind="stable")
                if j not in used and other.classes[j] == ref.classes[i] and ious[i, j] >= min_iou]
        if cand:
            used.add(cand[0])
            pairs.append((int(i), int(cand[0])))
    row: dict[str, Any] = {"ref": len(ref), "other": len(other), "matched": len(pairs), "min_box_iou": None,
                           "min_mask_iou": None, "max_mask_prob_diff": None, "max_score_diff": None,
                           "max_box_diff_px": None}
    if pairs:
        row.update(
            min_box_iou=min(float(ious[i, j]) for i, j in pairs),
            min_mask_iou=min(_mask_iou(ref.masks[i], other.masks[j]) for i, j in pairs),
            max_score_diff=max(abs(float(ref.scores[i]) - float(other.scores[j])) for i, j in pairs),
            max_box_diff_px=max(float(np.abs(ref.boxes[i] - other.boxes[j]).max()) for i, j in pairs),
        )
        if ref_probs is not None and other_probs is not None:
            row["max_mask_prob_diff"] = max(float(np.abs(ref_probs[i] - other_probs[j]).max()) for i, j in pairs)
    return row


def _within(row: dict, tol: Tolerances) -> bool:
    if not (row["ref"] == row["other"] == row["matched"]):
        return False
    if row["matched"] == 0:
        return True
    masks_ok = row["max_mask_prob_diff"] is None or row["max_mask_prob_diff"] <= tol.mask_prob
    return row["min_box_iou"] >= tol.box_iou and row["max_score_diff"] <= tol.score and masks_ok


def compare_models(eager: EagerModel, exported: ExportedModel, images: Sequence[str],
                   tolerances: Tolerances | None = None) -> list[dict[str, Any]]:
    """Predict ``images`` with both models; one :func:`compare_detections` row per image (+ ``image``, ``ok``)."""
    tol = tolerances or Tolerances()
    rows = []
    for path in images:
        bgr = read_bgr(path)
        (ref, ref_probs), (other, other_probs) = eager.detect(bgr), exported.detect(bgr)
        row = {"image": os.path.basename(path), **compare_detections(ref, other, 0.5, ref_probs, other_probs)}
        row["ok"] = _within(row, tol)
        rows.append(row)
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_comparison(rows: Sequence[dict], tolerances: Tolerances | None = None) -> str:
    """Markdown table of :func:`compare_models` rows, with the tolerances in the header line.

    Args:
        rows (list[dict]): comparison rows.
        tolerances (Tolerances or None): printed above the table.

    Returns:
        str: the table.
    """
    tol = tolerances or Tolerances()
    body = [[r["image"], r["ref"], r["other"], r["matched"], _fmt(r["min_box_iou"], ".4f"),
             _fmt(r["min_mask_iou"], ".4f"), _fmt(r.get("max_mask_prob_diff"), ".1e"),
             _fmt(r["max_score_diff"], ".1e"), "ok" if r["ok"] else "DIFFERS"] for r in rows]
    head = ["image", "eager", "exported", "matched", "min box IoU", "min mask IoU", "max mask prob diff",
            "max score diff", "result"]
    text = tabulate(body, headers=head, tablefmt="github", disable_numparse=True)
    return (f"tolerances: same instance count, box IoU >= {tol.box_iou}, score diff <= {tol.score:g}, "
            f"mask probability diff <= {tol.mask_prob:g}\n{text}")
