"""engine/run.py: one way to find a run, choose its checkpoint and read its configs and classes."""
from __future__ import annotations

import json
import os
import time

import pytest

from maskseg_d2.engine.run import RUN_ENV, Run
from maskseg_d2.errors import UserError


def _run_dir(path, classes=("car", "sign board"), num_classes=2, checkpoints=("model_final.pth",)):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: {num_classes}\n")
    (path / "run_info.json").write_text(json.dumps({"dataset": {"thing_classes": list(classes)}}))
    for name in checkpoints:
        (path / name).write_bytes(b"")
    return path


def test_open_reads_config_classes_and_chooses_the_checkpoint(tmp_path):
    run = Run.open(str(_run_dir(tmp_path / "r", checkpoints=("model_final.pth", "model_best.pth"))), device="cpu",
                   score_threshold=0.3, max_detections=7)
    assert run.thing_classes == ["car", "sign board"] and run.name == "r"
    assert run.d2cfg.MODEL.WEIGHTS == str(tmp_path / "r" / "model_best.pth") and run.d2cfg.MODEL.DEVICE == "cpu"
    assert run.d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.3 and run.d2cfg.TEST.DETECTIONS_PER_IMAGE == 7
    assert run.d2cfg.is_frozen()
    assert Run.open(str(tmp_path / "r"), "model_final.pth").d2cfg.MODEL.WEIGHTS.endswith("model_final.pth")


def test_open_errors(tmp_path):
    with pytest.raises(UserError, match=r"run=.*nope: not a directory — pass a run dir printed by tools/train.py"):
        Run.open(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"config.yaml: missing — .*empty is not a complete maskseg-d2 run dir"):
        Run.open(str(tmp_path / "empty"))
    bare = _run_dir(tmp_path / "bare", checkpoints=("model_0000009.pth",))
    with pytest.raises(UserError, match=r"model_final.pth: checkpoint not found — available in .*: model_0000009.pth"):
        Run.open(str(bare))
    with pytest.raises(UserError, match=r"score_threshold=2: must be in \[0, 1\]"):
        Run.open(str(bare), "model_0000009.pth", score_threshold=2)
    with pytest.raises(UserError, match=r"config_resolved.yaml: missing"):
        Run.open(str(bare), "model_0000009.pth").cfg  # noqa: B018
    mixed = _run_dir(tmp_path / "mixed", num_classes=3)
    with pytest.raises(UserError, match=r"run_info.json lists 2 classes but the model has 3"):
        Run.open(str(mixed))
    os.remove(mixed / "run_info.json")
    with pytest.raises(UserError, match=r"neither run_info.json nor config_resolved.yaml names the classes"):
        Run.open(str(mixed))


def test_find_dir_prefers_the_argument_then_env_then_newest(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_ENV, raising=False)
    with pytest.raises(UserError, match=r"no run found — train one \(make demo\) or set MASKSEG_RUN=<run dir>"):
        Run.find_dir(root=str(tmp_path))
    runs = [tmp_path / "demo" / "runs" / "a", tmp_path / "cars" / "runs" / "b",
            tmp_path / "demo" / "multiruns" / "t" / "0"]
    for age, run in zip((300, 100, 200), runs):
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("MODEL: {}\n")
        os.utime(run / "config.yaml", (time.time() - age, time.time() - age))
    (tmp_path / "demo" / "runs" / "crashed").mkdir()  # no config.yaml: not a run
    assert Run.find_dir(root=str(tmp_path)) == str(runs[1])
    monkeypatch.setenv(RUN_ENV, str(runs[0]))
    assert Run.find_dir(root=str(tmp_path)) == str(runs[0])
    assert Run.find_dir(str(runs[2])) == str(runs[2])
    monkeypatch.setenv(RUN_ENV, str(tmp_path / "demo" / "runs" / "crashed"))
    with pytest.raises(UserError, match=r"crashed: not a run directory \(no config.yaml\)"):
        Run.find_dir()


def test_is_run_dir_counts_unfinished_runs(tmp_path):
    assert not Run.is_run_dir(str(tmp_path))
    (tmp_path / ".hydra").mkdir()  # a sweep job that failed before training wrote anything
    assert Run.is_run_dir(str(tmp_path))
