"""Leaderboards over run dirs and sweep dirs (the files training writes, made by hand here)."""

import csv
import json

import pytest
import yaml

from maskseg_d2.errors import UserError
from maskseg_d2.engine.leaderboard import compare_runs, find_runs


def _run(path, overrides, iters, segm_ap, bbox_ap=None, classes=("car", "sign board")):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "metrics.json").write_text(
        "\n".join(json.dumps({"iteration": i, "total_loss": 1.0}) for i in range(0, iters, 10))
        + "\n"
        + json.dumps({"iteration": iters - 1, "segm/AP": segm_ap})
        + "\n"
    )
    if segm_ap is not None:
        (path / "eval").mkdir()
        res = {
            t: {"AP": ap, "AP50": ap and ap + 10, **{f"AP-{c}": ap for c in classes}}
            for t, ap in (("bbox", bbox_ap if bbox_ap is not None else segm_ap), ("segm", segm_ap))
        }
        res["segm"]["AP-sign board"] = None  # undefined: written as null by save_results
        (path / "eval" / "results.json").write_text(json.dumps(res))


def test_sweep_dir_leaderboard(tmp_path):
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    _run(sweep / "0", ["experiment=demo", "solver.base_lr=0.01"], 100, 20.0)
    _run(sweep / "1", ["experiment=demo", "solver.base_lr=0.02"], 100, 35.5)
    _run(sweep / "2", ["experiment=demo", "solver.base_lr=0.04"], 40, None)  # crashed before the final eval
    _run(sweep / "10", ["experiment=demo", "solver.base_lr=0.08"], 100, 30.0)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    assert [p.rsplit("/", 1)[1] for p in find_runs(str(sweep))] == ["0", "1", "2", "10"]

    md, (md_path, csv_path) = compare_runs(str(sweep))
    assert md_path == str(sweep / "leaderboard.md")
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["run"] for r in rows] == ["1", "10", "0", "2"]  # best segm AP first, no numbers last
    assert [r["overrides"] for r in rows] == [f"solver.base_lr={v}" for v in ("0.02", "0.08", "0.01", "0.04")]
    assert rows[0]["iterations"] == "100" and rows[3]["iterations"] == "40"
    assert rows[0]["segm AP"] == "35.5" and rows[0]["segm AP50"] == "45.5" and rows[0]["AP-car"] == "35.5"
    assert rows[0]["AP-sign board"] == "-" and rows[3]["segm AP"] == "-"
    assert "training not finished" in rows[3]["note"]
    assert "overrides common to all runs: experiment=demo" in md
    lines = md.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len({len(line) for line in table}) == 1  # aligned markdown


def test_list_of_runs_and_errors(tmp_path):
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    _run(a, ["model=r50_fpn_1x"], 50, 10.0, bbox_ap=12.0)
    _run(b, ["model=r18_fpn_scratch"], 50, 10.0, bbox_ap=15.0)
    md, paths = compare_runs([str(a), str(b)], str(tmp_path / "cmp"))
    rows = list(csv.DictReader(open(paths[1])))
    assert [r["run"] for r in rows] == ["b", "a"]  # same segm AP: bbox AP decides
    with pytest.raises(UserError, match="not a directory"):
        compare_runs([str(a), str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a run dir nor a sweep dir"):
        compare_runs(str(tmp_path / "empty"))


def test_failed_sweep_job_shows_its_error(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep / "0", ["model.weights=/no/such.pth"], 1, None)
    _run(sweep / "1", ["model.weights=scratch"], 20, 5.0)
    (sweep / "0" / "job_status.json").write_text(
        json.dumps({"status": "FAILED", "error": "UserError: no weights"})
    )
    rows = list(csv.DictReader(open(compare_runs(str(sweep))[1][1])))
    assert [r["run"] for r in rows] == ["1", "0"] and rows[1]["note"] == "FAILED: UserError: no weights"


def test_iterations_of_a_finished_run_count_the_final_evaluation_once(tmp_path):
    """Detectron2 logs the evaluation after the last step at iteration max_iter (after its loop's last += 1)."""
    run = tmp_path / "runs" / "a"
    _run(run, ["solver.max_iter=2"], 2, 10.0)
    with open(run / "metrics.json", "a") as f:
        f.write(json.dumps({"iteration": 2, "segm/AP": 10.0}) + "\n")
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({"solver": {"max_iter": 2}}))
    _, (_, csv_path) = compare_runs([str(run)], str(tmp_path / "cmp"))
    assert [r["iterations"] for r in csv.DictReader(open(csv_path))] == ["2"]
