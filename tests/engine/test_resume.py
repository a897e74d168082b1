"""``resume=<run dir>|last`` through tools/train.py (real processes): the run's saved overrides come back, a changed
training setting stops in one line (exit 2, nothing written), ``resume=last`` continues the newest run to a new
``solver.max_iter`` in its own dir, the first config is kept and the resume is recorded. Plus the rules of
:func:`settings_diff` and the override merge, without training."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.train_process import metrics_rows
from omegaconf import OmegaConf

from maskseg_d2.engine.resume import _merge, settings_diff

ROOT = Path(__file__).resolve().parents[2]
# 96 px images, no augmentation, no tracking, no drawing: two iterations in a few seconds.
SMALL = ["logger=none", "num_vis=0", "augment=none", "augment.min_size_train=[96]", "augment.max_size_train=128",
         "augment.min_size_test=96", "augment.max_size_test=128"]


def _tool(*overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MASKSEG_RUN"}  # resume=last: the newest under log_dir
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *overrides], cwd=ROOT, timeout=300,
                          env={**env, "WANDB_MODE": "disabled"}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def first_run(demo_root, tiny_overrides, tmp_path_factory) -> tuple[Path, Path]:
    """(log_dir, run_dir): a 2-iteration run started the way a user does, its dir chosen by Hydra."""
    log_dir = tmp_path_factory.mktemp("outputs")
    done = _tool(*tiny_overrides, *SMALL, f"dataset.root={demo_root}", "solver.max_iter=2", f"paths.log_dir={log_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (log_dir / "demo" / "runs").iterdir()
    return log_dir, run_dir


@pytest.mark.slow
def test_a_changed_training_setting_stops_in_one_line_and_writes_nothing(first_run):
    log_dir, run_dir = first_run
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    done = _tool(f"resume={run_dir}", f"paths.log_dir={log_dir}", "solver.base_lr=0.01", "solver.max_iter=4",
                 "augment.max_size_train=160")
    assert done.returncode == 2, done.stderr[-3000:]
    # demo's base_lr is 0.02; solver.max_iter may change and is not listed
    assert done.stderr.strip() == (f"error: resume: {run_dir} was trained with different settings: solver.base_lr "
                                   "0.02 -> 0.01, augment.max_size_train 128 -> 160 — continue with the same values "
                                   "or start a new run")
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert [p.name for p in (log_dir / "demo" / "runs").iterdir()] == [run_dir.name]  # no new run dir either


@pytest.mark.slow
def test_resume_last_continues_the_newest_run_to_a_new_max_iter(first_run):
    log_dir, run_dir = first_run
    first_config = (run_dir / ".hydra" / "config.yaml").read_text()
    first_resolved = (run_dir / "config_resolved.yaml").read_text()
    first_iters = [m["iteration"] for m in metrics_rows(run_dir) if "total_loss" in m]
    assert max(first_iters) == 1 and (run_dir / "last_checkpoint").read_text() == "model_final.pth"
    first_batch_mtime = (run_dir / "train_batch.jpg").stat().st_mtime_ns

    done = _tool("resume=last", f"paths.log_dir={log_dir}", "solver.max_iter=4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (log_dir / "demo" / "runs").iterdir()] == [run_dir.name]  # the run's own dir
    assert "Starting training from iteration 2" in (run_dir / "log.txt").read_text()  # Detectron2's own line
    assert (run_dir / "train_batch.jpg").stat().st_mtime_ns == first_batch_mtime  # drawn by the first session only
    new_iters = [m["iteration"] for m in metrics_rows(run_dir) if "total_loss" in m][len(first_iters):]
    assert new_iters and min(new_iters) >= 2 and max(new_iters) == 3  # JSONWriter appends after the first rows
    # the first session's configs are kept; this one's sit beside them, with the saved overrides re-applied
    assert (run_dir / ".hydra" / "config.yaml").read_text() == first_config
    assert (run_dir / "config_resolved.yaml").read_text() == first_resolved
    resumed = OmegaConf.load(run_dir / ".hydra" / "resume_1" / "config.yaml")
    assert resumed.solver.max_iter == 4 and resumed.solver.base_lr == 0.02 and resumed.augment.max_size_train == 128
    assert OmegaConf.load(run_dir / "config_resolved_resume_1.yaml").solver.max_iter == 4
    (entry,) = json.loads((run_dir / "run_info.json").read_text())["resumes"]
    assert entry["from_iteration"] == 2 and entry["max_iter"] == 4 and entry["checkpoint"] == "model_final.pth"
    assert entry["changed"] == {"solver.max_iter": [2, 4]} and entry["config"] == "config_resolved_resume_1.yaml"


def test_settings_diff_lists_fixed_keys_and_skips_changeable_new_and_redacted_ones():
    old = {"solver": {"base_lr": 0.02, "max_iter": 2, "steps": [0.7]}, "logger": {"name": "none"}, "gone": 1,
           "token": "***", "model": {"name": "r18"}}
    new = {"solver": {"base_lr": 0.01, "max_iter": 4, "steps": [0.8]}, "logger": {"name": "wandb", "project": "p"},
           "added": 2, "token": "abc", "model": {"name": "r18"}}
    assert settings_diff(old, new) == {"solver.base_lr": [0.02, 0.01], "solver.steps": [[0.7], [0.8]]}
    assert settings_diff(old, new, changeable=True) == {"solver.max_iter": [2, 4], "logger.name": ["none", "wandb"]}


def test_saved_overrides_come_first_and_a_new_value_replaces_a_saved_one():
    saved = ["experiment=demo", "solver.max_iter=2", "+d2.X=1", "+extra=1", "dataset.root=/d"]
    assert _merge(saved, ["resume=last", "solver.max_iter=4", "d2.X=2", "+extra=2"]) == [
        "experiment=demo", "+d2.X=1", "dataset.root=/d", "resume=last", "solver.max_iter=4", "d2.X=2", "+extra=2"]
