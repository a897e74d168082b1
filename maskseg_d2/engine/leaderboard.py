"""A leaderboard over runs: ``python tools/eval.py compare=[runA,runB]`` or ``compare=<multirun sweep dir>``.

Each run contributes its Hydra overrides (``.hydra/overrides.yaml``), the iterations it trained
(``metrics.json``, else ``solver.max_iter``) and the numbers training wrote to ``eval/results.json``.
Overrides shared by every run are shown once above the table; the table shows what differs.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml
from tabulate import tabulate

from ..errors import UserError, fail
from ..evaluation.tables import format_value
from .run import RESULTS, Run

__all__ = ["RunSummary", "find_runs", "summarize_run", "leaderboard", "compare_runs"]


@dataclass
class RunSummary:
    """Attributes:
    path (str): the run dir.
    name (str): its folder name.
    overrides (list[str]): Hydra command-line overrides of the run.
    iterations (int or None): iterations trained.
    results (dict): ``eval/results.json`` (Detectron2 layout, percent); empty when missing.
    note (str): why numbers are missing.
    """

    path: str
    name: str
    overrides: list[str] = field(default_factory=list)
    iterations: int | None = None
    results: dict = field(default_factory=dict)
    note: str = ""


def find_runs(spec: str | Sequence[str]) -> list[str]:
    """Run dirs from a list of run dirs, one run dir, or a sweep dir (its job subfolders, in job order)."""
    items = [spec] if isinstance(spec, str) else [str(s) for s in spec]
    runs = []
    for item in items:
        if not os.path.isdir(item):
            raise fail(f"compare={item}", "not a directory", "give run dirs or a multirun sweep dir")
        if Run.is_run_dir(item):
            runs.append(item)
            continue
        subs = [os.path.join(item, d) for d in os.listdir(item) if Run.is_run_dir(os.path.join(item, d))]
        if not subs:
            raise fail(
                f"compare={item}",
                "neither a run dir nor a sweep dir with runs in it",
                "give outputs/<task>/runs/<run> dirs or outputs/<task>/multiruns/<time>",
            )
        runs += sorted(
            subs,
            key=lambda p: (
                not os.path.basename(p).isdigit(),
                int(os.path.basename(p)) if os.path.basename(p).isdigit() else 0,
                p,
            ),
        )
    return runs


def _iterations(path: str) -> int | None:
    max_iter = None
    cfg = os.path.join(path, "config_resolved.yaml")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            value = ((yaml.safe_load(f) or {}).get("solver") or {}).get("max_iter")
        max_iter = int(value) if value is not None else None
    metrics = os.path.join(path, "metrics.json")
    if os.path.isfile(metrics):
        its = []
        with open(metrics) as f:
            for line in f:
                try:
                    its.append(int(json.loads(line)["iteration"]))
                except (ValueError, KeyError, TypeError):
                    continue
        if its:
            done = max(its) + 1  # Detectron2 logs 0-based iteration indices ...
            # ... except the evaluation after the last step, logged at max_iter: a finished run did max_iter
            return min(done, max_iter) if max_iter is not None else done
    return max_iter


def summarize_run(path: str) -> RunSummary:
    """Read what a run dir holds; a missing file becomes a note, never an exception."""
    run = RunSummary(path=path, name=os.path.basename(os.path.normpath(path)))
    overrides = os.path.join(path, ".hydra", "overrides.yaml")
    if os.path.isfile(overrides):
        with open(overrides) as f:
            run.overrides = [str(o) for o in (yaml.safe_load(f) or [])]
    run.iterations = _iterations(path)
    results = os.path.join(path, RESULTS)
    if os.path.isfile(results):
        try:
            with open(results) as f:
                run.results = json.load(f) or {}
        except json.JSONDecodeError:
            run.note = f"{RESULTS} is not valid JSON"
    else:
        run.note = f"no {RESULTS} (training not finished?)"
    status = os.path.join(path, "job_status.json")  # written for sweep jobs by maskseg_d2.engine.sweep
    if os.path.isfile(status):
        try:
            with open(status) as f:
                job = json.load(f)
        except json.JSONDecodeError:
            job = {}
        if job.get("status") == "FAILED":
            run.note = f"FAILED: {job.get('error', '?')}"
    return run


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not math.isnan(v) else float("nan")


def leaderboard(runs: Sequence[RunSummary]) -> tuple[list[str], list[list[str]], list[str], list[RunSummary]]:
    """Rows sorted by segm AP (then bbox AP), best first; runs without numbers last.

    Returns:
        tuple: (headers, rows, overrides common to every run, the runs in row order).
    """
    common = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    classes: list[str] = []
    for r in runs:
        task = "segm" if "segm" in r.results else "bbox"
        for k in r.results.get(task) or {}:
            if k.startswith("AP-") and k[3:] not in classes:
                classes.append(k[3:])

    def key(r: RunSummary):
        segm, bbox = (
            _num((r.results.get("segm") or {}).get("AP")),
            _num((r.results.get("bbox") or {}).get("AP")),
        )
        return (
            math.isnan(segm) and math.isnan(bbox),
            -(segm if not math.isnan(segm) else -1),
            -(bbox if not math.isnan(bbox) else -1),
            r.name,
        )

    headers = ["rank", "run", "overrides", "iterations", "bbox AP", "bbox AP50", "segm AP", "segm AP50"]
    headers += [f"AP-{c}" for c in classes] + ["note"]
    rows, ordered = [], sorted(runs, key=key)
    for rank, r in enumerate(ordered, start=1):
        bbox, segm = r.results.get("bbox") or {}, r.results.get("segm") or {}
        per_class = segm or bbox
        rows.append(
            [
                str(rank),
                r.name,
                " ".join(o for o in r.overrides if o not in common) or "-",
                str(r.iterations) if r.iterations is not None else "-",
                format_value(bbox.get("AP")),
                format_value(bbox.get("AP50")),
                format_value(segm.get("AP")),
                format_value(segm.get("AP50")),
            ]
            + [format_value(per_class.get(f"AP-{c}")) for c in classes]
            + [r.note]
        )
    return headers, rows, sorted(common), ordered


def compare_runs(spec: str | Sequence[str], output: str | None = None) -> tuple[str, list[str]]:
    """Write ``leaderboard.md`` and ``leaderboard.csv``.

    Args:
        spec (str or list[str]): run dirs, or a sweep dir.
        output (str or None): folder; default the sweep dir, else the runs' common parent folder.

    Returns:
        tuple[str, list[str]]: the markdown and the two paths.
    """
    runs = [summarize_run(p) for p in find_runs(spec)]
    if not runs:
        raise UserError(f"compare={spec}: no runs found — give run dirs written by tools/train.py (with "
                        f"eval/results.json) or a multirun sweep dir")
    parent = os.path.commonpath([os.path.abspath(os.path.dirname(os.path.normpath(r.path))) for r in runs])
    for r in runs:  # sweep jobs are all called 0, 1, ...: name runs by their path below the common parent
        r.name = os.path.relpath(os.path.abspath(r.path), parent)
    headers, rows, common, ordered = leaderboard(runs)
    if output is None:
        output = spec if isinstance(spec, str) and not Run.is_run_dir(spec) else parent
    os.makedirs(output, exist_ok=True)
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    per_class_task = "segm" if any("segm" in r.results for r in runs) else "bbox"
    md = "\n".join(
        [
            f"# Leaderboard ({len(runs)} runs, best {per_class_task} AP first)",
            "",
            f"- overrides common to all runs: {' '.join(common) or '-'}",
            f"- AP in percent (COCO); per-class columns are {per_class_task} AP; '-' = not available",
            "",
            table,
            "",
        ]
    )
    md_path, csv_path = os.path.join(output, "leaderboard.md"), os.path.join(output, "leaderboard.csv")
    with open(md_path, "w") as f:
        f.write(md)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(headers[:1] + ["path"] + headers[1:])
        for row, r in zip(rows, ordered):
            w.writerow(row[:1] + [r.path] + row[1:])
    return md, [md_path, csv_path]
