"""Shared by the benchmarks: did both sides produce the same output? A speed ratio counts only if they did.

Each check raises :class:`Mismatch` saying what differed; :func:`exit_on_mismatch` turns that into exit status 1
with the message on stderr, so a benchmark whose sides disagree fails loudly instead of printing a ratio.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Sequence

import numpy as np

# maskseg_d2 before detectron2 (its import makes the Python-only Detectron2 importable)
from maskseg_d2.deploy import compare_detections
from maskseg_d2.predict import Detections

__all__ = ["Mismatch", "exit_on_mismatch", "check_same_stats", "check_same_detections", "STAT_NAMES"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class Mismatch(AssertionError):
    """The two sides of a benchmark produced different outputs."""


def exit_on_mismatch(main: Callable[[], Any]) -> Callable[[], Any]:
    """Decorator for a benchmark's ``main``: a :class:`Mismatch` -> ``MISMATCH: <what>`` on stderr, exit 1."""

    @functools.wraps(main)
    def wrapped() -> Any:
        try:
            return main()
        except Mismatch as e:
            print(f"MISMATCH: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapped


def check_same_stats(ref: dict[str, Sequence[float]], new: dict[str, Sequence[float]], tol: float = 1e-9,
                     names: tuple[str, str] = ("reference", "ours")) -> float:
    """The 12 COCO stats of every task agree within ``tol``.

    Args:
        ref, new (dict[str, array]): task (``bbox``/``segm``) -> the 12 stats of ``COCOeval.summarize``.
        tol (float): largest allowed absolute difference.
        names (tuple[str, str]): the two sides, for the message.

    Returns:
        float: the largest absolute difference found.

    Raises:
        Mismatch: a task is missing on one side or a stat differs by more than ``tol``.
    """
    if set(ref) != set(new):
        raise Mismatch(f"tasks differ: {names[0]} {sorted(ref)} vs {names[1]} {sorted(new)}")
    worst, bad = 0.0, []
    for task in sorted(ref):
        a, b = np.asarray(ref[task], np.float64), np.asarray(new[task], np.float64)
        if a.shape != b.shape:
            raise Mismatch(f"{task}: {len(a)} stats ({names[0]}) vs {len(b)} ({names[1]})")
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0
        diff[np.isnan(a) != np.isnan(b)] = np.inf
        worst = max(worst, float(diff.max(initial=0.0)))
        bad += [f"{task} {STAT_NAMES[i] if len(a) == 12 else i}: {float(a[i])!r} vs {float(b[i])!r}"
                for i in np.flatnonzero(diff > tol)]
    if bad:
        raise Mismatch(f"COCO stats differ by more than {tol:g} ({names[0]} vs {names[1]}): " + "; ".join(bad))
    return worst


def check_same_detections(ref: Sequence[Detections], new: Sequence[Detections], labels: Sequence[str],
                          min_mask_iou: float = 0.99, names: tuple[str, str] = ("reference", "ours")) -> dict:
    """Per image: the same number of instances, each matched to one of the same class with mask IoU >= ``min_mask_iou``.

    Matching (``maskseg_d2.deploy.compare_detections``): in ``ref``'s score order, each instance takes the
    unmatched ``new`` instance of the same class with the highest box IoU (>= 0.5); index order is not trusted,
    since near-equal scores may swap between two implementations.

    Args:
        ref, new (list[Detections]): one per image, same order.
        labels (list[str]): image names, for the message.
        min_mask_iou (float): lowest allowed mask IoU of a matched pair.
        names (tuple[str, str]): the two sides, for the message.

    Returns:
        dict: ``images``, ``instances`` (of ``ref``), ``min_mask_iou`` (over all pairs; 1.0 when none).

    Raises:
        Mismatch: an image count, an instance count, an unmatched instance or a mask IoU below the bound.
    """
    if len(ref) != len(new):
        raise Mismatch(f"{len(ref)} images ({names[0]}) vs {len(new)} ({names[1]})")
    bad, lowest = [], 1.0
    for label, a, b in zip(labels, ref, new):
        row = compare_detections(a, b, min_iou=0.5)
        if row["min_mask_iou"] is not None:
            lowest = min(lowest, row["min_mask_iou"])
        if not row["ref"] == row["other"] == row["matched"]:
            bad.append(f"{label}: {row['ref']} instances ({names[0]}) vs {row['other']} ({names[1]}), "
                       f"{row['matched']} matched (same class, box IoU >= 0.5)")
        elif row["matched"] and row["min_mask_iou"] < min_mask_iou:
            bad.append(f"{label}: a matched instance has mask IoU {row['min_mask_iou']:.4f} < {min_mask_iou}")
    if bad:
        raise Mismatch(f"{len(bad)} of {len(ref)} image(s) differ: " + "; ".join(bad[:5])
                       + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""))
    return {"images": len(ref), "instances": sum(len(a) for a in ref), "min_mask_iou": lowest}
