"""Everything ``tools/eval.py`` writes for one evaluation: tables, plots, confusion matrices, worst images.

Layout of ``<output>/``::

    results.json  results.csv  results.md          the numbers (Detectron2 layout, long CSV, markdown)
    ap_per_class.png  pr_curves_<task>.png         per-class AP bars, precision-recall @ IoU 0.5 / 0.75
    confusion_<task>.png  confusion_<task>.csv     class confusion at IoU >= 0.5, with background
    worst_images.csv  worst/<rank>_<image>.png     the images with most missed + false instances
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .analysis import draw_worst_images, worst_images, write_worst_csv
from .cocoeval import (
    GroundTruth,
    Predictions,
    TaskEval,
    evaluate_tasks,
    load_ground_truth,
    load_predictions,
    to_d2_results,
)
from .confusion import Confusion, confusion_matrix
from .plots import plot_ap_per_class, plot_confusion, plot_pr_curves
from .tables import (
    format_notes,
    gt_instance_counts,
    save_results,
    undefined_reasons,
    write_results_csv,
    write_results_md,
)

__all__ = ["Report", "write_report", "evaluate_coco", "backend_description"]

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """Attributes:
    results (dict): Detectron2 layout ``{"bbox": {...}, "segm": {...}}`` (percent, NaN undefined).
    markdown (str): the text of ``results.md``.
    files (list[str]): every file written.
    confusion (dict[str, Confusion]): per task.
    """

    results: dict
    markdown: str
    files: list[str] = field(default_factory=list)
    confusion: dict[str, Confusion] = field(default_factory=dict)


def backend_description(evaluations: Mapping[str, TaskEval]) -> str:
    """``faster-coco-eval 1.8.0 (bbox 0.10 s, segm 0.25 s)``."""
    if not evaluations:
        return "-"
    backend = next(iter(evaluations.values())).backend
    name = {
        "faster": "faster-coco-eval",
        "detectron2": "detectron2 COCOeval_opt",
        "pycocotools": "pycocotools",
    }
    pkg = {"faster": "faster-coco-eval", "pycocotools": "pycocotools", "detectron2": "detectron2"}[backend]
    try:
        version = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    times = ", ".join(f"{t} {ev.seconds:.2f} s" for t, ev in evaluations.items())
    return f"{name[backend]} {version} ({times})"


def write_report(
    gt: GroundTruth,
    preds: Predictions,
    evaluations: Mapping[str, TaskEval],
    output: str,
    header: Mapping[str, Any] | None = None,
    *,
    image_root: str | None = None,
    score_thresh: float = 0.5,
    num_worst: int = 8,
    plots: bool = True,
) -> Report:
    """Write the tables, plots, confusion matrices and worst images of an evaluation into ``output``.

    Args:
        gt (GroundTruth): the checked ground truth.
        preds (Predictions): the checked predictions.
        evaluations (dict[str, TaskEval]): from :func:`~maskseg_d2.evaluation.cocoeval.evaluate_tasks`.
        output (str): folder (created).
        header (dict): lines for the top of ``results.md`` (what was evaluated).
        image_root (str or None): folder of the GT ``file_name`` values, for the worst-image drawings.
        score_thresh (float): score threshold of the confusion matrix and the drawings.
        num_worst (int): how many worst images to list and draw (0: none).
        plots (bool): write the PNG plots.

    Returns:
        Report: results, markdown, written files.
    """
    os.makedirs(output, exist_ok=True)
    names = gt.class_names
    results = {t: to_d2_results(ev, names) for t, ev in evaluations.items()}
    reasons = undefined_reasons(gt, evaluations)
    report = Report(results, "")
    save_results(results, _add(report, output, "results.json"))
    write_results_csv(results, reasons, _add(report, output, "results.csv"))
    if plots and evaluations:
        plot_ap_per_class(results, names, _add(report, output, "ap_per_class.png"))
        for task, ev in evaluations.items():
            if ev.precision is not None:
                plot_pr_curves(ev, names, _add(report, output, f"pr_curves_{task}.png"))
    if evaluations:  # also without predictions: then every GT instance is missed
        for task in evaluations:
            report.confusion[task] = conf = confusion_matrix(gt, preds, task, score_thresh)
            _write_confusion_csv(conf, _add(report, output, f"confusion_{task}.csv"))
            if plots:
                plot_confusion(conf, _add(report, output, f"confusion_{task}.png"))
        _error_analysis(report, gt, preds, output, image_root, score_thresh, num_worst)
    head = {
        **(header or {}),
        "evaluation": backend_description(evaluations),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    notes = format_notes(reasons) + gt.warnings + preds.warnings
    worst_dir = os.path.join(output, "worst", "")
    files = [os.path.relpath(p, output) for p in report.files if not p.startswith(worst_dir)]
    if any(p.startswith(worst_dir) for p in report.files):
        files.append(
            f"worst/ ({sum(p.startswith(worst_dir) for p in report.files)} images, GT left, prediction right)"
        )
    report.files.append(os.path.join(output, "results.md"))
    report.markdown = write_results_md(
        results,
        report.files[-1],
        header=head,
        class_names=names,
        gt_counts=gt_instance_counts(gt),
        notes=notes,
        files=files,
    )
    return report


def _add(report: Report, output: str, name: str) -> str:
    path = os.path.join(output, name)
    report.files.append(path)
    return path


def _write_confusion_csv(conf: Confusion, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gt \\ predicted"] + conf.labels)
        for label, row in zip(conf.labels, conf.matrix):
            w.writerow([label] + [int(v) for v in row])


def _error_analysis(
    report: Report,
    gt: GroundTruth,
    preds: Predictions,
    output: str,
    image_root: str | None,
    score_thresh: float,
    num_worst: int,
) -> None:
    if num_worst <= 0:
        return
    conf = report.confusion.get("segm") or report.confusion.get("bbox")
    worst = worst_images(conf, num_worst)
    write_worst_csv(worst, gt, _add(report, output, "worst_images.csv"))
    written, skipped = draw_worst_images(
        worst, gt, preds, os.path.join(output, "worst"), image_root, score_thresh
    )
    report.files.extend(written)
    for why, names in skipped.items():  # one line per reason, with the count and the first example
        gt.warnings.append(_skip_warning(why, names, image_root))
        logger.warning(gt.warnings[-1])


def _skip_warning(why: str, names: list[str], image_root: str | None) -> str:
    n, first = len(names), names[0]
    if why == "outside image_root":
        return (
            f"worst images: {n} file_name(s) point outside image_root {image_root} (e.g. {first}), not "
            "drawn — file names must be relative paths inside image_root (or pass image_root=<a folder "
            "that holds them>)"
        )
    if why == "no file_name":
        return f"worst images: {n} image(s) without a file_name (e.g. {first}), not drawn — add file_name"
    if why == "unreadable":
        return f"worst images: {n} image file(s) could not be read (e.g. {first}), not drawn — replace them"
    return (
        f"worst images: {n} image file(s) not found (e.g. {first}), not drawn "
        "— pass image_root=<folder of the images>"
    )


# Same keyword options as write_report, repeated on purpose: this is the public entry point of tools/eval.py
# gt= pred=, and its signature documents every option a user can set without reading write_report.
def evaluate_coco(
    gt_path: str,
    pred_path: str,
    output: str | None = None,
    *,
    backend: str = "auto",
    image_root: str | None = None,
    score_thresh: float = 0.5,
    num_worst: int = 8,
    plots: bool = True,
) -> Report:
    """Evaluate a COCO results file against a COCO GT file, no model needed.

    Args:
        gt_path (str): COCO instances JSON.
        pred_path (str): COCO results JSON (bbox and/or segmentation as RLE or polygons, score).
        output (str or None): default ``<pred dir>/<pred stem>_eval``.
        backend (str): evaluation backend (``auto``: the fastest exact one installed).
        image_root (str or None): folder of the GT ``file_name`` values; default the GT file's folder (where
            a COCO export keeps ``images/...``). Worst images are only read from inside it: a file name
            with ``..`` or an absolute path elsewhere is skipped and counted in the notes.
        score_thresh, num_worst, plots: see :func:`write_report`.

    Returns:
        Report: results (Detectron2 layout, percent) and what was written.
    """
    gt = load_ground_truth(gt_path)
    preds = load_predictions(pred_path, gt)
    evaluations = evaluate_tasks(gt, preds, backend=backend)
    output = output or os.path.join(
        os.path.dirname(os.path.abspath(pred_path)),
        os.path.splitext(os.path.basename(pred_path))[0] + "_eval",
    )
    header = {
        "ground truth": f"{gt_path} ({len(gt.dataset['images'])} images, "
        f"{len(gt.dataset['annotations'])} annotations)",
        "predictions": f"{pred_path} ({len(preds.results)} results)",
    }
    return write_report(
        gt,
        preds,
        evaluations,
        output,
        header,
        image_root=image_root or os.path.dirname(os.path.abspath(gt_path)),
        score_thresh=score_thresh,
        num_worst=num_worst,
        plots=plots,
    )
