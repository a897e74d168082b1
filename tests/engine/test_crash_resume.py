"""Crash and resume for real: tools/train.py is SIGKILLed after its first checkpoint, then ``resume=true`` in the same
run dir continues from that iteration to the same max_iter (~30 s on 2 CPU cores)."""
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.train_process import metrics_rows, start_train, wait_for_checkpoint

pytestmark = pytest.mark.slow

MAX_ITER = 4
# 96 px images: fast iterations; a checkpoint after iterations 1 and 3 (and model_final).
SMALL = ["logger=none", "num_vis=0", f"solver.max_iter={MAX_ITER}", "solver.checkpoint_period=2", "augment=none",
         "augment.min_size_train=[96]", "augment.max_size_train=128", "augment.min_size_test=96",
         "augment.max_size_test=128"]


def _train(run_dir: Path, demo_root: Path, tiny: list[str], *extra: str) -> subprocess.Popen:
    return start_train(run_dir, *tiny, *SMALL, f"dataset.root={demo_root}", *extra)


def test_sigkill_then_resume_continues_from_the_checkpoint_to_max_iter(demo_root, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    first = _train(run_dir, demo_root, tiny_overrides)
    wait_for_checkpoint(first, run_dir, "model_0000001.pth")
    first.send_signal(signal.SIGKILL)  # no cleanup, no final checkpoint: like an OOM kill or a power cut
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert not (run_dir / "model_final.pth").exists()
    lines_before = len(metrics_rows(run_dir))  # Detectron2's JSONWriter appends: the resumed run's lines come after

    second = _train(run_dir, demo_root, tiny_overrides, "resume=true")
    out = second.communicate(timeout=240)[0]
    assert second.returncode == 0, out[-3000:]
    assert "Starting training from iteration 2" in (run_dir / "log.txt").read_text()  # Detectron2's own line
    assert f"Resuming from {run_dir / 'model_0000001.pth'} at iteration 2 of {MAX_ITER}" in out
    new = metrics_rows(run_dir, skip=lines_before)
    iterations = [m["iteration"] for m in new if "total_loss" in m]
    assert iterations and min(iterations) >= 2 and max(iterations) == MAX_ITER - 1
    # resume loaded a full training checkpoint (optimizer, scheduler, hooks) with weights_only=True
    final = torch.load(run_dir / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == final["trainer"]["iteration"] == MAX_ITER - 1
    assert final["trainer"]["_trainer"]["optimizer"]["state"] and final["trainer"]["hooks"]["LRScheduler"]
    assert (run_dir / "last_checkpoint").read_text() == "model_final.pth"
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
