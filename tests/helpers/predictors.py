"""Our batched predictor vs Detectron2's ``DefaultPredictor`` on the same images, and an instance-by-instance
comparison of their outputs that tolerates what fp16 may change (scores a little, masks at their edges, who is
kept right at a cut-off) and nothing else.

Used by the GPU test (fp16 autocast vs fp32) and exercised on CPU by tests/gpu/test_cpu_parts.py.
"""
from __future__ import annotations

import numpy as np

# maskseg_d2 first: importing it is what patches Detectron2 (Pillow's LINEAR) before detectron2.engine loads
from maskseg_d2.predict import BatchPredictor, Detections

from detectron2.config import CfgNode  # isort: skip
from detectron2.engine import DefaultPredictor  # isort: skip


def run_both(d2cfg: CfgNode, images: list[np.ndarray], amp: bool) -> tuple[list[tuple[Detections, Detections]], bool]:
    """Predict ``images`` with :class:`BatchPredictor` (one batch) and with ``DefaultPredictor`` (one at a time,
    fp32, Detectron2's reference path).

    Args:
        d2cfg (CfgNode): a run's config (``Run.open(...).d2cfg``): model, weights, device, thresholds.
        images (list[np.ndarray]): (H, W, 3) uint8 BGR.
        amp (bool): fp16 autocast for ours (only on CUDA; BatchPredictor ignores it on CPU).

    Returns:
        tuple: ``[(ours, reference), ...]`` per image (the reference without empty masks, which BatchPredictor
        drops), and whether ours still ran in fp16 at the end (it falls back to fp32 when an op fails).
    """
    ours = BatchPredictor(d2cfg, amp=amp)
    got = ours([ours.preprocess(im) for im in images])
    reference = DefaultPredictor(d2cfg)
    pairs = []
    for im, g in zip(images, got):
        ref = Detections.from_instances(reference(im)["instances"])
        pairs.append((g, ref.select(ref.masks.any(axis=(1, 2)))))
    return pairs, ours.amp


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, H, W) and (M, H, W) bool masks."""
    fa, fb = a.reshape(len(a), -1).astype(np.float32), b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


def _floor(d: Detections, score_threshold: float, max_detections: int) -> float:
    """The lowest score this side could have kept: the threshold, or its last score when it hit the cap."""
    return max(score_threshold, float(d.scores.min())) if len(d) >= max_detections else score_threshold


def instance_mismatches(got: Detections, ref: Detections, score_threshold: float, max_detections: int,
                        score_atol: float = 0.02, min_iou: float = 0.9, pair_iou: float = 0.5) -> list[str]:
    """What differs between two predictions of one image, instance by instance; [] when they agree.

    Instances are paired greedily by mask IoU (highest first) within the same class; a pair needs IoU >=
    ``pair_iou``. A pair agrees when its mask IoU >= ``min_iou`` and its scores differ by <= ``score_atol``.
    An instance without a partner is a mismatch unless the other side could have cut it off: its score is within
    ``score_atol`` of the other side's floor (the score threshold, or the last kept score of a side that holds
    ``max_detections`` instances).

    Args:
        got, ref (Detections): the two predictions (same image size).
        score_threshold (float): ``ROI_HEADS.SCORE_THRESH_TEST`` both ran with.
        max_detections (int): ``TEST.DETECTIONS_PER_IMAGE`` both ran with.
        score_atol (float): how far two scores of one instance may be apart.
        min_iou (float): the least mask IoU of a pair.
        pair_iou (float): the least mask IoU to call two instances the same one.

    Returns:
        list[str]: one line per mismatch.
    """
    assert got.image_size == ref.image_size, (got.image_size, ref.image_size)
    iou = _mask_iou(got.masks, ref.masks) if len(got) and len(ref) else np.zeros((len(got), len(ref)))
    same_class = got.classes[:, None] == ref.classes[None, :]
    cand = np.where(same_class & (iou >= pair_iou), iou, -1.0)
    pairs: list[tuple[int, int]] = []
    while cand.size and cand.max() >= 0:
        i, j = np.unravel_index(np.argmax(cand), cand.shape)
        pairs.append((int(i), int(j)))
        cand[i, :], cand[:, j] = -1.0, -1.0
    problems = []
    for i, j in pairs:
        if iou[i, j] < min_iou or abs(float(got.scores[i]) - float(ref.scores[j])) > score_atol:
            problems.append(f"class {int(got.classes[i])}: scores {got.scores[i]:.4f} vs {ref.scores[j]:.4f}, "
                            f"mask IoU {iou[i, j]:.3f}")
    for side, this, other, matched, axis in (("ours", got, ref, {i for i, _ in pairs}, 1),
                                             ("reference", ref, got, {j for _, j in pairs}, 0)):
        floor = _floor(other, score_threshold, max_detections)
        for k in sorted(set(range(len(this))) - matched):
            if float(this.scores[k]) < floor + score_atol:
                continue  # the other side may have cut it off (threshold or cap)
            best = (iou[k] if axis == 1 else iou[:, k]) if iou.size else np.zeros(0)
            near = f"best IoU {best.max():.3f} with any class" if best.size else "the other side is empty"
            problems.append(f"{side} only: class {int(this.classes[k])}, score {this.scores[k]:.4f} ({near})")
    return problems
