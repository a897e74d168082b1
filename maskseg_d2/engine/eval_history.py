"""``eval_history.csv`` and ``eval_history_per_class.csv``: one row per evaluation of a run, from ``metrics.json``.

What Ultralytics users open as ``results.csv`` in a spreadsheet; Detectron2 keeps the same numbers as JSON lines
mixed with the training log rows. The name is not ``results.csv``: that is the one evaluation ``tools/eval.py``
writes (:func:`maskseg_d2.evaluation.report.write_report`, beside ``results.json`` and ``results.md``), another
table. The columns keep ``metrics.json``'s names (``total_loss``, ``val/total_loss``, ``bbox/AP``,
``segm/AP50``...), so each name means the same thing in every file of the run.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any

from ..utils.fileio import atomic_write_text
from ..visualization.curves import read_metrics

__all__ = ["EVAL_HISTORY", "EVAL_HISTORY_PER_CLASS", "evaluation_rows", "per_class_rows", "write_eval_history"]

EVAL_HISTORY = "eval_history.csv"  # one row per evaluation during training
EVAL_HISTORY_PER_CLASS = "eval_history_per_class.csv"  # one row per (evaluation, class)

_TASKS = ("bbox", "segm")
_STAT_ORDER = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _is_eval(row: dict) -> bool:
    return any(f"{t}/AP" in row for t in _TASKS)


def _is_train_key(key: str) -> bool:
    return key == "lr" or key == "total_loss" or key.startswith("loss_")


def _ap_key_order(key: str) -> tuple:
    task, stat = key.split("/", 1)
    return _TASKS.index(task), _STAT_ORDER.index(stat) if stat in _STAT_ORDER else len(_STAT_ORDER), stat


def evaluation_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per evaluation: iteration, training losses and lr, validation losses, bbox/segm AP (overall).

    The training values are the evaluation row's own or, when it has none, those of the last training row
    before it: Detectron2 logs the final evaluation one iteration after the last training step.

    Args:
        rows (list[dict]): the JSON lines of ``metrics.json`` (:func:`~maskseg_d2.visualization.curves.read_metrics`).

    Returns:
        list[dict]: ordered by iteration; keys as in ``metrics.json``.
    """
    out, last_train = [], {}
    for row in rows:
        train = {k: v for k, v in row.items() if _is_train_key(k)}
        if "total_loss" in train:
            last_train = train
        if not _is_eval(row):
            continue
        record: dict[str, Any] = {"iteration": row["iteration"], **(train if "total_loss" in train else last_train)}
        record.update({k: v for k, v in row.items() if k.startswith("val/")})
        record.update({k: v for k, v in row.items() if k.split("/", 1)[0] in _TASKS and "-" not in k})
        out.append(record)
    return out


def per_class_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (evaluation, class): ``iteration``, ``class``, ``bbox/AP``, ``bbox/AP50``, ``segm/AP``...

    Args:
        rows (list[dict]): the JSON lines of ``metrics.json``.

    Returns:
        list[dict]: ordered by iteration, then class as first logged.
    """
    out = []
    for row in rows:
        if not _is_eval(row):
            continue
        by_class: dict[str, dict[str, Any]] = {}
        for key, value in row.items():
            task, _, stat = key.partition("/")
            if task in _TASKS and "-" in stat:
                name, cls = stat.split("-", 1)  # "AP50-sign board" -> AP50, sign board
                by_class.setdefault(cls, {"iteration": row["iteration"], "class": cls})[f"{task}/{name}"] = value
        out.extend(by_class.values())
    return out


def _columns(records: list[dict], first: tuple[str, ...]) -> list[str]:
    keys = {k for r in records for k in r} - set(first)
    train = sorted((k for k in keys if _is_train_key(k)), key=lambda k: (k != "total_loss", k != "lr", k))
    val = sorted((k for k in keys if k.startswith("val/")), key=lambda k: (k != "val/total_loss", k))
    ap = sorted((k for k in keys if k.split("/", 1)[0] in _TASKS), key=_ap_key_order)
    return [*first, *train, *val, *ap]


def _write(records: list[dict], first: tuple[str, ...], path: str) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, _columns(records, first), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, text.getvalue())


def write_eval_history(metrics_json: str, out_dir: str) -> list[str]:
    """Write ``<out_dir>/eval_history.csv`` (one row per evaluation) and ``eval_history_per_class.csv``.

    Args:
        metrics_json (str): Detectron2's ``metrics.json`` of a run.
        out_dir (str): where the CSVs go (the run directory, beside ``curves.png``).

    Returns:
        list[str]: the written paths; empty when the run has no evaluation yet.
    """
    if not os.path.isfile(metrics_json):
        return []
    rows = read_metrics(metrics_json)
    evals = evaluation_rows(rows)
    if not evals:
        return []
    paths = [os.path.join(out_dir, EVAL_HISTORY)]
    _write(evals, ("iteration",), paths[0])
    classes = per_class_rows(rows)
    if classes:
        paths.append(os.path.join(out_dir, EVAL_HISTORY_PER_CLASS))
        _write(classes, ("iteration", "class"), paths[1])
    return paths
