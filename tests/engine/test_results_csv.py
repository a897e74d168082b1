"""results.csv / results_per_class.csv after training: one row per evaluation, values equal to metrics.json's."""
from __future__ import annotations

import csv
import json
import math

import pytest

pytestmark = pytest.mark.slow  # reads the shared tiny training run


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines() if line.strip()]


def _same(cell: str, value: float) -> bool:
    return math.isnan(value) if cell == "nan" else float(cell) == pytest.approx(value, rel=1e-12, abs=0)


def test_results_csv_rows_equal_metrics_json_evaluations(tiny_run):
    run_dir, _ = tiny_run
    rows = _metrics(run_dir)
    evals = [r for r in rows if "segm/AP" in r]
    assert len(evals) == 2  # TINY_RUN: eval_period 2 of 4 iterations -> iteration 1 and the final one
    with open(run_dir / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in table] == [e["iteration"] for e in evals]
    for got, want in zip(table, evals):
        overall = {k: v for k, v in want.items() if k.split("/")[0] in ("bbox", "segm") and "-" not in k}
        assert {"bbox/AP", "segm/AP", "segm/AP50"} <= set(overall)
        for key, value in {**overall, **{k: v for k, v in want.items() if k.startswith("val/")}}.items():
            assert _same(got[key], value), key
        # training losses: the row's own, or the last training row before it (the final evaluation's row has none)
        train = want if "total_loss" in want else [r for r in rows if "total_loss" in r
                                                   and r["iteration"] < want["iteration"]][-1]
        for key in ("total_loss", "loss_mask", "loss_cls", "lr"):
            assert _same(got[key], train[key]), key
    assert list(table[0])[:2] == ["iteration", "total_loss"]


def test_per_class_csv_has_one_row_per_evaluation_and_class(tiny_run):
    run_dir, _ = tiny_run
    evals = [r for r in _metrics(run_dir) if "segm/AP" in r]
    with open(run_dir / "results_per_class.csv", newline="") as f:
        table = list(csv.DictReader(f))
    expected = [(e["iteration"], c) for e in evals for c in ("car", "sign board")]
    assert [(int(r["iteration"]), r["class"]) for r in table] == expected
    for row in table:
        want = next(e for e in evals if e["iteration"] == int(row["iteration"]))
        for task in ("bbox", "segm"):
            assert _same(row[f"{task}/AP"], want[f"{task}/AP-{row['class']}"])
            assert _same(row[f"{task}/AP50"], want[f"{task}/AP50-{row['class']}"])
