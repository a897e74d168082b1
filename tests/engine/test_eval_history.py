"""eval_history.csv / eval_history_per_class.csv after training: one row per evaluation, values equal to
metrics.json's; a name of their own, apart from tools/eval.py's results.csv."""
from __future__ import annotations

import csv
import json
import math

import pytest

from maskseg_d2.engine.eval_history import write_eval_history


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines() if line.strip()]


def _same(cell: str, value: float) -> bool:
    return math.isnan(value) if cell == "nan" else float(cell) == pytest.approx(value, rel=1e-12, abs=0)


def test_history_of_a_metrics_json_without_training(tmp_path):
    lines = [{"iteration": 9, "total_loss": 1.5, "loss_mask": 0.5, "lr": 0.01},
             {"iteration": 10, "bbox/AP": 40.0, "segm/AP": 35.5, "segm/AP-car": 30.0, "val/total_loss": 1.25}]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    paths = write_eval_history(str(tmp_path / "metrics.json"), str(tmp_path))
    assert paths == [str(tmp_path / "eval_history.csv"), str(tmp_path / "eval_history_per_class.csv")]
    assert not (tmp_path / "results.csv").exists()
    assert (tmp_path / "eval_history.csv").read_text().splitlines() == [
        "iteration,total_loss,lr,loss_mask,val/total_loss,bbox/AP,segm/AP", "10,1.5,0.01,0.5,1.25,40.0,35.5"]
    assert (tmp_path / "eval_history_per_class.csv").read_text().splitlines() == [
        "iteration,class,segm/AP", "10,car,30.0"]


@pytest.mark.slow  # reads the shared tiny training run
def test_eval_history_rows_equal_metrics_json_evaluations(tiny_run):
    run_dir, _ = tiny_run
    rows = _metrics(run_dir)
    evals = [r for r in rows if "segm/AP" in r]
    assert len(evals) == 2  # TINY_RUN: eval_period 2 of 4 iterations -> iteration 1 and the final one
    with open(run_dir / "eval_history.csv", newline="") as f:
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


@pytest.mark.slow  # reads the shared tiny training run
def test_per_class_csv_has_one_row_per_evaluation_and_class(tiny_run):
    run_dir, _ = tiny_run
    evals = [r for r in _metrics(run_dir) if "segm/AP" in r]
    with open(run_dir / "eval_history_per_class.csv", newline="") as f:
        table = list(csv.DictReader(f))
    expected = [(e["iteration"], c) for e in evals for c in ("car", "sign board")]
    assert [(int(r["iteration"]), r["class"]) for r in table] == expected
    for row in table:
        want = next(e for e in evals if e["iteration"] == int(row["iteration"]))
        for task in ("bbox", "segm"):
            assert _same(row[f"{task}/AP"], want[f"{task}/AP-{row['class']}"])
            assert _same(row[f"{task}/AP50"], want[f"{task}/AP50-{row['class']}"])
