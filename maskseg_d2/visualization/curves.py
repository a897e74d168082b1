"""``curves.png``: training/validation loss and AP over iterations, drawn from Detectron2's metrics.json."""
from __future__ import annotations

import json
import math
import os
from typing import Any

from matplotlib.figure import Figure  # not pyplot: no backend switch, no global figure list

__all__ = ["read_metrics", "plot_training_curves"]

_AP_KEYS = ("bbox/AP", "segm/AP", "bbox/AP50", "segm/AP50")


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The JSON lines of ``metrics.json`` (a truncated last line, from a killed run, is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["iteration"], float(r[key])) for r in rows
           if key in r and isinstance(r[key], (int, float)) and math.isfinite(float(r[key]))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(metrics_json: str, out_png: str) -> str | None:
    """Two panels: losses (training total and its parts, validation total) and AP (bbox/segm) vs iteration.

    Args:
        metrics_json (str): Detectron2's ``metrics.json`` of a run.
        out_png (str): where to write the PNG.

    Returns:
        str or None: ``out_png``, or None when there is nothing to draw yet.
    """
    if not os.path.isfile(metrics_json):
        return None
    rows = read_metrics(metrics_json)
    if not any("total_loss" in r for r in rows):
        return None
    fig = Figure(figsize=(12, 4.5))
    ax_loss, ax_ap = fig.subplots(1, 2)
    parts = sorted({k for r in rows for k in r if k.startswith("loss_")})
    for key in parts:
        ax_loss.plot(*_series(rows, key), lw=0.8, alpha=0.6, label=key)
    ax_loss.plot(*_series(rows, "total_loss"), lw=2, color="black", label="train total_loss")
    x, y = _series(rows, "val/total_loss")
    if x:
        ax_loss.plot(x, y, "o-", lw=2, color="tab:red", label="val total_loss")
    ax_loss.set(xlabel="iteration", ylabel="loss", title="Losses (median of 20 iterations)")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    drawn = False
    for key in _AP_KEYS:
        x, y = _series(rows, key)
        if x:
            ax_ap.plot(x, y, "o-", label=key)
            drawn = True
    ax_ap.set(xlabel="iteration", ylabel="AP (%)", title="COCO AP on the validation split")
    if drawn:
        ax_ap.legend(fontsize=8)
    else:
        ax_ap.text(0.5, 0.5, "no AP yet", ha="center", va="center", transform=ax_ap.transAxes)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
