"""Before training: an output dir that cannot be written or a disk without room for the checkpoints is one
line and exit code 2 from tools/train.py, before any training; a write that fails mid-run names the file."""
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.errors import UserError
from maskseg_d2.utils.preflight import check_disk_space, checkpoint_bytes, disk_errors

ROOT = Path(__file__).resolve().parents[2]
FAST = ["experiment=demo", "device=cpu", "logger=none", "solver.ims_per_batch=2", "solver.warmup_iters=1",
        "d2.DATALOADER.NUM_WORKERS=0", "num_vis=0"]


def _fsize_limit(limit: int):
    def apply():  # in the child: writes past `limit` bytes fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _train(*args: str, limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, preexec_fn=_fsize_limit(limit) if limit else None)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.stderr.rstrip().endswith(line)  # the last word
    return line


@pytest.mark.parametrize("where", ["under_a_file", "proc", "sweep_under_a_file"])
def test_unwritable_output_dir_is_one_line_before_anything(where, tmp_path, demo_root):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a regular file")
    target, args = {
        "under_a_file": (blocker / "run", [f"hydra.run.dir={blocker}/run"]),
        "proc": (Path("/proc/mseg/run"), ["hydra.run.dir=/proc/mseg/run"]),  # fails for root too
        "sweep_under_a_file": (blocker / "sweep", ["-m", f"hydra.sweep.dir={blocker}/sweep", "seed=1,2"]),
    }[where]
    proc = _train(*args, *FAST, f"dataset.root={demo_root}")  # -m first: Hydra's argparse wants it there
    line = _error_line(proc)
    key = "hydra.sweep.dir" if where.startswith("sweep") else "hydra.run.dir"
    assert line.startswith(f"error: {target}: ") and f"choose another folder: {key}=<dir>" in line
    if where != "proc":
        assert f"cannot create the output dir, {blocker} is a file" in line
        assert blocker.read_text() == "a regular file"
    assert "Starting training" not in proc.stdout and not list(tmp_path.rglob("model_*.pth"))


def test_too_little_free_disk_is_one_line_with_numbers(tmp_path, demo_root):
    run_dir = tmp_path / "run"
    free = shutil.disk_usage(tmp_path).free / 2**30
    proc = _train(*FAST, f"dataset.root={demo_root}", f"hydra.run.dir={run_dir}",
                  f"min_free_gb={free + 100:.0f}")
    line = _error_line(proc)
    m = re.search(r"not enough free disk space: ([\d.]+) GB free, the run needs ([\d.]+) GB", line)
    assert m and abs(float(m.group(1)) - free) < 1 and float(m.group(2)) == pytest.approx(round(free + 100))
    assert line.startswith(f"error: {run_dir}: ") and "min_free_gb=<GB>" in line and "min_free_gb=0" in line
    assert "Starting training" not in proc.stdout and not list(run_dir.glob("model_*.pth"))


def test_file_size_limit_below_a_checkpoint_is_caught_before_training(tmp_path, demo_root):
    proc = _train(*FAST, f"dataset.root={demo_root}", f"hydra.run.dir={tmp_path / 'run'}", limit=20 << 20)
    line = _error_line(proc)
    assert "the file size limit (ulimit -f) is 20 MB" in line and "ulimit -f unlimited" in line
    assert "Starting training" not in proc.stdout


def test_checkpoint_estimate_matches_a_real_checkpoint(compose_cfg, demo_root, tmp_path):
    cfg = compose_cfg("experiment=demo", f"dataset.root={demo_root}", "device=cpu")
    d2cfg = build_d2_cfg(cfg, register_dataset(cfg.dataset), str(tmp_path))
    estimate = checkpoint_bytes(d2cfg)
    model = build_model(d2cfg)  # a real checkpoint: weights + SGD momentum after one step
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "ckpt.pth")
    assert estimate == pytest.approx((tmp_path / "ckpt.pth").stat().st_size, rel=0.02)

    info = check_disk_space(str(tmp_path / "run"), d2cfg)  # auto: 2 checkpoints + 0.5 GB, enough here
    assert info["needed_gb"] == pytest.approx(2 * estimate / 2**30 + 0.5)
    assert check_disk_space(str(tmp_path), d2cfg, min_free_gb=0)["needed_gb"] == 0


def test_disk_full_write_names_the_file(tmp_path):
    # /dev/full: every write fails with ENOSPC, as on a full disk
    with pytest.raises(UserError) as info:
        with disk_errors(str(tmp_path)):
            with open("/dev/full", "wb") as f:
                torch.save({"w": torch.zeros(100_000)}, f)
    msg = str(info.value)
    assert msg.startswith("/dev/full: disk full, cannot write (No space left on device, ")
    assert "free disk space" in msg and msg.endswith("then run it again")  # no checkpoint to resume from
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with disk_errors(str(tmp_path)):
            raise ValueError("not a write error")


@pytest.mark.slow
def test_write_failing_mid_training_is_one_line_naming_the_checkpoint(tmp_path, demo_root):
    # A 20 MB file size limit: configs and logs fit, the first checkpoint (~130 MB) fails with EFBIG
    # mid-run; min_free_gb=0 turns off the preflight that would catch it before training.
    run_dir = tmp_path / "run"
    proc = _train(*FAST, f"dataset.root={demo_root}", f"hydra.run.dir={run_dir}", "solver.max_iter=3",
                  "solver.checkpoint_period=1", "min_free_gb=0", limit=20 << 20)
    line = _error_line(proc)
    assert line.startswith(f"error: {run_dir}/model_0000000.pth: file too large for the file size limit")
    assert "ulimit -f unlimited" in line and line.endswith("then run it again")
    assert "Starting training" in proc.stdout and (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("*.pth*")) and not list(run_dir.glob(".*.pth*"))  # no partial checkpoint
