"""PNG plots of an evaluation (matplotlib figures saved to files): per-class AP bars, precision-recall
curves per class at IoU 0.5 and 0.75, and the class confusion matrix."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
# Figure objects, not pyplot: files are drawn without a display and the caller's backend (a notebook's
# inline plots) is left alone.
from matplotlib.figure import Figure

from .cocoeval import TaskEval
from .confusion import Confusion

__all__ = ["plot_ap_per_class", "plot_pr_curves", "plot_confusion"]

_REC_THRS = np.linspace(0.0, 1.00, 101)  # pycocotools' recall thresholds


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def plot_ap_per_class(results: Mapping[str, Mapping], class_names: Sequence[str], path: str) -> str:
    """Horizontal bars: AP and AP50 per class, one panel per task; ``-`` where a class has no GT."""
    tasks = [t for t in ("bbox", "segm") if t in results]
    k = max(len(class_names), 1)
    fig = Figure(figsize=(5.5 * len(tasks), 1.2 + 0.38 * k))
    axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)
    y = np.arange(len(class_names))
    for ax, task in zip(axes[0], tasks):
        for offset, key, color in ((-0.2, "AP", "tab:blue"), (0.2, "AP50", "tab:orange")):
            vals = [results[task].get(f"{key}-{n}") for n in class_names]
            ax.barh(y + offset, [v if _finite(v) else 0 for v in vals], height=0.38, color=color, label=key)
            for yi, v in zip(y, vals):
                ax.text(
                    (v if _finite(v) else 0) + 1,
                    yi + offset,
                    f"{v:.1f}" if _finite(v) else "-",
                    va="center",
                    fontsize=7,
                )
        ax.set_xlim(0, 110)
        ax.set_title(f"{task}: AP {results[task].get('AP', float('nan')):.1f}")
        ax.set_xlabel("AP (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, class_names)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_pr_curves(ev: TaskEval, class_names: Sequence[str], path: str, iou_thresholds=(0.5, 0.75)) -> str:
    """Precision vs recall per class (area all, 100 detections), one panel per IoU threshold."""
    fig = Figure(figsize=(5.5 * len(iou_thresholds), 4.8))
    axes = fig.subplots(1, len(iou_thresholds), squeeze=False)
    iou_thrs = np.linspace(0.5, 0.95, 10)
    for ax, thr in zip(axes[0], iou_thresholds):
        t = int(np.argmin(np.abs(iou_thrs - thr)))
        for k, name in enumerate(class_names):
            p = ev.precision[t, :, k, 0, -1] if ev.precision is not None else np.array([-1.0])
            if (p < 0).all():
                continue  # no GT for this class: no curve
            ax.plot(_REC_THRS, np.clip(p, 0, None), label=f"{name} ({np.mean(p[p > -1]) * 100:.1f})", lw=1.4)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.02),
            xlabel="recall",
            ylabel="precision",
            title=f"{ev.task} precision-recall @ IoU {thr:.2f}",
        )
        ax.grid(alpha=0.3)
        if len(class_names) <= 20 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left", title="class (AP)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_confusion(conf: Confusion, path: str) -> str:
    """Counts, coloured by share of the row (for a GT class: how often it is found as each class)."""
    m = conf.matrix.astype(float)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(conf.labels)
    size = 2.5 + 0.55 * n
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if i == n - 1 and j == n - 1:
                continue  # background vs background is not counted
            ax.text(
                j,
                i,
                str(int(m[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), conf.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), conf.labels)
    ax.set(
        xlabel="predicted",
        ylabel="ground truth",
        title=f"{conf.task} confusion (IoU ≥ {conf.iou_thresh:g}, score ≥ {conf.score_thresh:g})",
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
