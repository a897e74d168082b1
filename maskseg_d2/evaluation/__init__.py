"""COCO evaluation: the evaluator used in training, the flat metric lookup for sweeps, the AP tables.

Modules:
    cocoeval    exact pycocotools numbers from a fast backend (:func:`evaluate_task`, :func:`evaluate_tasks`)
    ground_truth, predictions, coco_checks
                checks of user-given COCO GT / results files (:func:`load_ground_truth`, :func:`load_predictions`)
    evaluator   :class:`ExactCOCOEvaluator`, Detectron2's COCOEvaluator scoring through ``cocoeval``
    tables      markdown / CSV / results.json, '-' and the reason where a number is undefined
    plots       per-class AP bars, precision-recall curves, confusion matrix (PNG)
    confusion   class confusion at IoU >= 0.5 with background, per-image error counts
    analysis    the worst images drawn GT vs prediction
    report      all of the above into one output folder; :func:`evaluate_coco` (no model)
"""

from __future__ import annotations

from typing import Any, Mapping

from .evaluator import ExactCOCOEvaluator
from .tables import AP_KEYS, format_ap_table, save_results

# The scoring API lives in its modules (cocoeval.evaluate_task, report.evaluate_coco, ground_truth, predictions);
# the package exports what training and the tools use.
__all__ = ["build_evaluator", "get_metric", "format_ap_table", "save_results", "AP_KEYS", "ExactCOCOEvaluator"]


def build_evaluator(dataset_name: str, output_dir: str, backend: str = "auto") -> ExactCOCOEvaluator:
    """COCO evaluator for boxes and masks: pycocotools' exact numbers, all 12 COCO stats, AP/AP50 per class.

    Args:
        dataset_name (str): a registered dataset (``<name>_val``).
        output_dir (str): where ``coco_instances_results.json`` and the GT conversion go (re-converted at
            every evaluation, so a stale ``*_coco_format.json`` can never be reused).
        backend (str): ``auto`` (faster-coco-eval, else Detectron2's C++ COCOeval when compiled, else
            pycocotools) | ``faster`` | ``detectron2`` | ``pycocotools``.
    """
    return ExactCOCOEvaluator(
        dataset_name, output_dir, tasks=("bbox", "segm"), distributed=True, backend=backend
    )


def get_metric(results: Mapping[str, Any], name: str) -> float:
    """``get_metric(results, "segm/AP")`` on Detectron2's nested results; clear error when missing."""
    task, _, key = name.partition("/")
    try:
        value = results[task][key]
    except KeyError:
        have = [f"{t}/{k}" for t, v in results.items() if isinstance(v, Mapping) for k in v]
        raise KeyError(
            f"metric {name!r} not in the evaluation results; available: {', '.join(have[:20])}"
        ) from None
    return float("nan") if value is None else float(value)  # None: undefined, as saved in results.json
