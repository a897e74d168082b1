"""The AP tables people read and paste: aligned markdown, CSV and Detectron2's ``results.json``.

Undefined numbers (Detectron2's NaN, pycocotools' -1) are written as ``-`` and the reason is given beside
them ("no small GT objects", "no predictions", ...), never as NaN or -100.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Mapping, Sequence

from tabulate import tabulate

from .cocoeval import AREA_RANGES, STAT_NAMES, GroundTruth, TaskEval

__all__ = [
    "AP_KEYS",
    "format_value",
    "format_ap_table",
    "format_class_table",
    "gt_instance_counts",
    "undefined_reasons",
    "format_notes",
    "save_results",
    "write_results_csv",
    "write_results_md",
]

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_AREA_OF = {"APs": "small", "ARs": "small", "APm": "medium", "ARm": "medium", "APl": "large", "ARl": "large"}
_AREA_TEXT = {"small": "area < 32² px", "medium": "32² ≤ area < 96² px", "large": "area ≥ 96² px"}


def format_value(value: Any) -> str:
    """Percent with one decimal; ``-`` for None, NaN and negative (undefined) values."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or value < 0)):
        return "-"
    return f"{float(value):.1f}"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(
        rows,
        headers=headers,
        tablefmt="github",
        disable_numparse=True,
        colalign=("left",) + ("right",) * (len(headers) - 1),
    )


def format_ap_table(results: Mapping[str, Any]) -> str:
    """Markdown table: one row per task (bbox, segm), the COCO stats present (all 12 when available).

    Args:
        results (dict): Detectron2's ``{"bbox": {...}, "segm": {...}}`` (percent).

    Returns:
        str: aligned markdown; ``-`` where a stat is undefined.
    """
    tasks = [t for t in ("bbox", "segm") if isinstance(results.get(t), Mapping)]
    if not tasks:  # e.g. a non-main DDP process, or evaluation skipped
        return "(no evaluation results)"
    keys = [k for k in STAT_NAMES if any(k in results[t] for t in tasks)] or list(AP_KEYS)
    rows = [[t] + [format_value(results[t].get(k)) for k in keys] for t in tasks]
    return _table(rows, ["task"] + keys)


def format_class_table(
    results: Mapping[str, Any], class_names: Sequence[str], gt_counts: Mapping[str, int] | None = None
) -> str:
    """Markdown table: one row per class, AP and AP50 per task (and GT instance counts when given)."""
    tasks = [t for t in ("bbox", "segm") if isinstance(results.get(t), Mapping)]
    headers = ["class"] + (["GT"] if gt_counts is not None else [])
    headers += [f"{t} {k}" for t in tasks for k in ("AP", "AP50")]
    rows = []
    for name in class_names:
        row = [name] + ([str(gt_counts.get(name, 0))] if gt_counts is not None else [])
        row += [format_value(results[t].get(f"{k}-{name}")) for t in tasks for k in ("AP", "AP50")]
        rows.append(row)
    return _table(rows, headers)


def gt_instance_counts(gt: GroundTruth) -> dict[str, int]:
    """Non-crowd GT instances per class name."""
    names = dict(zip(gt.cat_ids, gt.class_names))
    counts = {n: 0 for n in gt.class_names}
    for a in gt.dataset["annotations"]:
        if not a.get("iscrowd"):
            counts[names[a["category_id"]]] += 1
    return counts


def undefined_reasons(gt: GroundTruth, evaluations: Mapping[str, TaskEval]) -> dict[str, dict[str, str]]:
    """Why each undefined number is undefined: ``{task: {key: reason}}`` for the keys that are ``-``.

    pycocotools leaves a stat undefined when no non-crowd GT instance falls in its area range (or class);
    Detectron2 additionally leaves everything undefined when there are no predictions.
    """
    non_crowd = [a for a in gt.dataset["annotations"] if not a.get("iscrowd")]
    in_area = {
        label: sum(lo <= a["area"] <= hi for a in non_crowd) for label, (lo, hi) in AREA_RANGES.items()
    }
    out: dict[str, dict[str, str]] = {}
    for task, ev in evaluations.items():
        reasons: dict[str, str] = {}
        no_preds = ev.precision is None
        for name, value in zip(STAT_NAMES, ev.stats):
            if value < 0:
                area = _AREA_OF.get(name, "all")
                if no_preds:
                    reasons[name] = "no predictions"
                elif in_area[area] == 0:
                    reasons[name] = (
                        "no GT instances" if area == "all" else f"no {area} GT objects ({_AREA_TEXT[area]})"
                    )
                else:
                    reasons[name] = "undefined"
        for cls, (ap, ap50) in zip(gt.class_names, ev.per_class().values()):
            if math.isnan(ap):
                why = "no predictions" if no_preds else f"no GT instances of '{cls}'"
                reasons[f"AP-{cls}"] = reasons[f"AP50-{cls}"] = why
        out[task] = reasons
    return out


def format_notes(reasons: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per reason: ``APs, ARs (bbox, segm): no small GT objects (area < 32² px)``."""
    grouped: dict[str, dict[str, list[str]]] = {}
    for task, by_key in reasons.items():
        for key, why in by_key.items():
            grouped.setdefault(why, {}).setdefault(key, []).append(task)
    lines = []
    for why, keys in grouped.items():
        by_tasks: dict[tuple, list[str]] = {}
        for key, tasks in keys.items():
            by_tasks.setdefault(tuple(tasks), []).append(key)
        for tasks, ks in by_tasks.items():
            lines.append(f"{', '.join(ks)} ({', '.join(tasks)}): {why}")
    return lines


def _clean(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _clean(x) for k, x in v.items()}
    return None if isinstance(v, float) and math.isnan(v) else v


def save_results(results: Mapping[str, Any], path: str) -> None:
    """Write Detectron2's results layout ``{"bbox": {...}, "segm": {...}}`` (percent); NaN -> null."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(_clean(dict(results)), f, indent=2)


def write_results_csv(
    results: Mapping[str, Any], reasons: Mapping[str, Mapping[str, str]], path: str
) -> None:
    """Long format ``task,metric,value,note``: value in percent (4 decimals) or ``-`` with the reason."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "metric", "value", "note"])
        for task, metrics in results.items():
            if not isinstance(metrics, Mapping):
                continue
            for key, value in metrics.items():
                text = format_value(value)
                writer.writerow(
                    [
                        task,
                        key,
                        text if text == "-" else f"{float(value):.4f}",
                        reasons.get(task, {}).get(key, "") if text == "-" else "",
                    ]
                )


def write_results_md(
    results: Mapping[str, Any],
    path: str,
    *,
    header: Mapping[str, Any] | None = None,
    class_names: Sequence[str] = (),
    gt_counts: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    files: Sequence[str] = (),
) -> str:
    """``results.md``: what was evaluated, the COCO stats table, the per-class table, notes and files.

    Returns:
        str: the markdown written (tools print it).
    """
    parts = ["# COCO evaluation", ""]
    parts += [f"- {k}: {v}" for k, v in (header or {}).items()] + [""]
    parts += ["## COCO stats (%)", "", format_ap_table(results), ""]
    if class_names:
        parts += ["## Per-class AP (%)", "", format_class_table(results, class_names, gt_counts), ""]
    if notes:
        parts += ["## Notes ('-' = undefined)", ""] + [f"- {n}" for n in notes] + [""]
    if files:
        parts += ["## Files", ""] + [f"- {p}" for p in files] + [""]
    text = "\n".join(parts)
    with open(path, "w") as f:
        f.write(text)
    return text
