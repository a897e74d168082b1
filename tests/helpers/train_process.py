"""tools/train.py in a subprocess, to SIGKILL it after a checkpoint and resume it (CPU and GPU crash tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    """Start ``tools/train.py *overrides hydra.run.dir=run_dir`` (W&B disabled), stdout+stderr piped as text.

    Args:
        run_dir (Path): the run directory (a resume passes the same one with ``resume=true``).
        *overrides (str): Hydra overrides.

    Returns:
        subprocess.Popen: the running training.
    """
    args = [sys.executable, str(ROOT / "tools" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, name: str, timeout: float = 120) -> None:
    """Block until ``run_dir/last_checkpoint`` names ``name``; kill ``proc`` and fail with its output if it exits
    or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    pointer = run_dir / "last_checkpoint"
    while not (pointer.exists() and pointer.read_text() == name):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {name} before exit/timeout:\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.05)


def metrics_rows(run_dir: Path, skip: int = 0) -> list[dict]:
    """The rows of ``run_dir/metrics.json`` (Detectron2's JSONWriter, one JSON object a line) after the first
    ``skip``; [] when the file does not exist yet."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[skip:]]
