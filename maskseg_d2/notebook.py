"""What ``notebooks/01_quickstart.ipynb`` calls: find a run, describe it, draw its masks, AP table, loss curve.

Each function is one notebook cell's work and returns a value (text, a matplotlib ``Figure``, a predict
summary) so the notebook holds no logic and the same calls work in a script. Inside a Jupyter kernel the
figures are displayed explicitly (``IPython.display``) and closed, so each shows once, whichever backend the
kernel uses and whether or not the call is the cell's last line.
"""
from __future__ import annotations

import json
import os
from typing import Any

import cv2
import matplotlib.pyplot as plt
import numpy as np

from detectron2.data import DatasetCatalog

from .browse import draw_run_predictions
from .engine.run import RESULTS, RUN_ENV, Run
from .errors import UserError
from .evaluation import format_ap_table
from .predict import predict_source, read_bgr
from .visualization.curves import read_metrics

__all__ = ["RUN_ENV", "find_run", "describe_run", "ap_table", "show_image", "show_gt_vs_pred", "predict_image",
           "plot_loss"]

find_run = Run.find_dir  # the notebook's name for it


def describe_run(run_dir: str) -> str:
    """A few lines about a run: dataset, classes, split sizes, schedule, checkpoints (from ``run_info.json``).

    Args:
        run_dir (str): a run directory.

    Returns:
        str: the description.
    """
    info: dict[str, Any] = {}
    path = os.path.join(run_dir, "run_info.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    data, sched = info.get("dataset", {}), info.get("schedule", {})
    ckpts = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth"))
    return "\n".join([
        f"run:         {run_dir}",
        f"dataset:     {data.get('name', '?')} "
        f"({data.get('num_train', '?')} train / {data.get('num_val', '?')} val images)",
        f"classes:     {data.get('thing_classes', '?')}",
        f"schedule:    {sched.get('max_iter', '?')} iterations x {sched.get('ims_per_batch', '?')} images",
        f"checkpoints: {', '.join(ckpts) or 'none'}",
    ])


def ap_table(run_dir: str) -> str:
    """The run's final COCO AP table (``<run>/eval/results.json``, written by training), as markdown.

    Args:
        run_dir (str): a run directory.

    Returns:
        str: :func:`maskseg_d2.evaluation.format_ap_table` of the results.
    """
    path = os.path.join(run_dir, RESULTS)
    if not os.path.isfile(path):
        raise UserError(
            f"{path}: not found — the run has no final evaluation; run python tools/eval.py run={run_dir}")
    with open(path, encoding="utf-8") as f:
        return format_ap_table(json.load(f))


def _show(fig):
    """Display ``fig`` under the running notebook cell (if any) and close it; returns it for saving."""
    try:  # optional: IPython, there only inside Jupyter
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return fig
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        display(fig)
        plt.close(fig)
    return fig


def show_image(image: np.ndarray | str, title: str | None = None, width: float = 12.0):
    """Draw an RGB array or an image file in a new figure, without axes.

    Args:
        image (np.ndarray or str): (H, W, 3) uint8 RGB, or a path.
        title (str or None): the figure title.
        width (float): figure width in inches (height follows the aspect ratio).

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    if isinstance(image, str):
        image = read_bgr(image)[:, :, ::-1]
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(width, max(width * h / w, 1.0)))
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _show(fig)


def show_gt_vs_pred(run_dir: str, num_images: int = 2, score_threshold: float = 0.5, split: str = "val"):
    """Ground truth (left) beside predicted masks (right) for the first images of a split, in one figure.

    The drawings are also written to ``<run>/notebook/gt_vs_pred/`` (see
    :func:`maskseg_d2.browse.draw_run_predictions`).

    Args:
        run_dir (str): a run directory (its dataset must be on disk).
        num_images (int): how many images.
        score_threshold (float): predictions below are not drawn.
        split (str): ``val`` or ``train``.

    Returns:
        matplotlib.figure.Figure: one row per image.
    """
    out = os.path.join(run_dir, "notebook", "gt_vs_pred")
    paths = draw_run_predictions(run_dir, out, side_by_side=True, split=split, num_images=num_images,
                                 score_threshold=score_threshold, device="auto")[:num_images]
    fig, axes = plt.subplots(len(paths), 1, figsize=(12, 4.2 * len(paths)), squeeze=False)
    for ax, path in zip(axes[:, 0], paths):
        ax.imshow(cv2.imread(path)[:, :, ::-1])
        ax.set_title(f"{os.path.basename(path)}: ground truth | prediction (score >= {score_threshold:g})")
        ax.set_axis_off()
    fig.tight_layout()
    return _show(fig)


def sample_image(run_dir: str, split: str = "val") -> str:
    """The first image of the run's ``split`` (its dataset must be on disk)."""
    records = DatasetCatalog.get(Run.open(run_dir, device="cpu").split_name(split))
    if not records:
        raise UserError(f"{run_dir}: the {split} split of its dataset is empty — pass an image path")
    return records[0]["file_name"]


def predict_image(run_dir: str, image: str | None = None, score_threshold: float = 0.5):
    """Predict one image with :func:`maskseg_d2.predict.predict_source` and draw the masked result.

    Args:
        run_dir (str): a run directory.
        image (str or None): an image file; None: the first validation image of the run.
        score_threshold (float): detections below are dropped.

    Returns:
        tuple: (``PredictSummary``, ``matplotlib.figure.Figure`` of the overlay written under
        ``<run>/notebook/predict/``).
    """
    image = image or sample_image(run_dir)
    summary = predict_source(run_dir, image, os.path.join(run_dir, "notebook", "predict"), score_threshold,
                             device="auto", save=["overlay"], progress=False)
    title = f"{os.path.basename(image)}: {summary.instances} instance(s) with score >= {score_threshold:g}"
    return summary, show_image(summary.overlays[0], title)


def plot_loss(run_dir: str):
    """Training losses (total and parts) and, when logged, the validation loss over iterations.

    Args:
        run_dir (str): a run directory (reads Detectron2's ``metrics.json``).

    Returns:
        matplotlib.figure.Figure: the loss curves (log scale).
    """
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not found — pass a run dir written by tools/train.py")
    rows = [r for r in read_metrics(path) if "iteration" in r]

    def series(key: str) -> tuple[list, list]:
        pts = [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(10, 4))
    for key in sorted({k for r in rows for k in r if k.startswith("loss_")}):
        ax.plot(*series(key), ".-", lw=1, ms=4, alpha=0.7, label=key)
    ax.plot(*series("total_loss"), "o-", lw=2, color="black", label="total_loss")
    val = series("val/total_loss")
    if val[0]:
        ax.plot(*val, "s--", lw=2, color="tab:red", label="val/total_loss")
    ax.set(xlabel="iteration", ylabel="loss", yscale="log", title=f"Losses of {os.path.basename(run_dir)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _show(fig)
