"""COCO evaluation: the evaluator, the flat metric lookup for sweeps, and the AP table people read."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from .. import compat

compat.apply()

from detectron2.evaluation import COCOEvaluator  # noqa: E402

__all__ = ["build_evaluator", "get_metric", "format_ap_table", "save_results", "AP_KEYS"]

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def build_evaluator(dataset_name: str, output_dir: str) -> COCOEvaluator:
    """COCOEvaluator for boxes and masks. Uses the C++ COCOeval only when Detectron2's compiled ops exist.

    Args:
        dataset_name (str): a registered dataset (``<name>_val``).
        output_dir (str): where ``coco_instances_results.json`` and the GT cache go (one per run, so a
            stale ``*_coco_format.json`` cache from another dataset version can never be reused).
    """
    return COCOEvaluator(
        dataset_name, tasks=("bbox", "segm"), distributed=True, output_dir=output_dir,
        use_fast_impl=compat.has_compiled_ops(),
    )


def get_metric(results: Mapping[str, Any], name: str) -> float:
    """``get_metric(results, "segm/AP")`` on Detectron2's nested results; clear error when missing."""
    task, _, key = name.partition("/")
    try:
        return float(results[task][key])
    except KeyError:
        have = [f"{t}/{k}" for t, v in results.items() if isinstance(v, Mapping) for k in v]
        raise KeyError(f"metric {name!r} not in the evaluation results; available: {', '.join(have[:20])}") from None


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or value < 0)):
        return "-"  # undefined: e.g. no small objects in GT for APs, or no predictions at all
    return f"{float(value):.1f}"


def format_ap_table(results: Mapping[str, Any]) -> str:
    """Markdown table: one row per task (bbox, segm), COCO AP columns in percent; '-' where undefined."""
    header = "| task | " + " | ".join(AP_KEYS) + " |"
    lines = [header, "|" + "---|" * (len(AP_KEYS) + 1)]
    for task in ("bbox", "segm"):
        if task in results:
            lines.append(f"| {task} | " + " | ".join(_fmt(results[task].get(k)) for k in AP_KEYS) + " |")
    return "\n".join(lines)


def save_results(results: Mapping[str, Any], path: str) -> None:
    """Write Detectron2's results layout ``{"bbox": {...}, "segm": {...}}`` (percent); NaN -> null."""
    def clean(v):
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        return None if isinstance(v, float) and math.isnan(v) else v

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(clean(dict(results)), f, indent=2)
