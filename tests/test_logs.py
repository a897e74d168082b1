"""One log per run: every tool writes ``log.txt`` into its output folder with Detectron2's lines and ours, once."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.utils.logger import setup_logger

from maskseg_d2.utils.logs import LOG_FILE, open_run_log
from maskseg_d2.utils.secrets import install_log_redaction, register_secrets

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\[\d\d/\d\d \d\d:\d\d:\d\d\] (\S+) (INFO|WARNING|ERROR): (.*)$")  # Detectron2's format


def _records(path: Path) -> list[tuple[str, str]]:
    """``[(logger name, message first line), ...]`` of a log.txt."""
    return [(m.group(1), m.group(3)) for m in map(LINE.match, path.read_text(encoding="utf-8").splitlines()) if m]


def _tool(name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, f"tools/{name}.py", *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_detectron2_setup_adds_no_handler_after_open_run_log_and_secrets_are_redacted(tmp_path):
    run = tmp_path / "run"
    open_run_log(str(run))
    # what Detectron2's default_setup does after us: cached calls, they add no handler (terminal + log.txt)
    setup_logger(str(run), distributed_rank=0, name="fvcore")
    setup_logger(str(run), distributed_rank=0)
    for name in ("detectron2", "fvcore"):
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    open_run_log(str(run))  # a second run in the process: its handlers replace the first's, lines stay single
    register_secrets(["h17-not-a-real-token"])
    install_log_redaction()
    logging.getLogger("detectron2.engine.train_loop").info("Starting training from iteration 0")
    logging.getLogger("fvcore.common.checkpoint").info("[Checkpointer] Loading from x.pth ...")
    logging.getLogger("maskseg_d2.engine.train").info("ours, token=h17-not-a-real-token")
    try:
        assert _records(run / LOG_FILE) == [
            ("detectron2.engine.train_loop", "Starting training from iteration 0"),
            ("fvcore.common.checkpoint", "[Checkpointer] Loading from x.pth ..."),
            ("maskseg_d2.engine.train", "ours, token=***"),
        ]
        for name in ("detectron2", "fvcore"):
            assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_maskseg_run_log", False)]:
            root.removeHandler(h)
            h.close()


@pytest.mark.slow
def test_train_tool_writes_one_log_and_the_terminal_shows_each_line_once(demo_root, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    proc = _tool("train", *tiny_overrides, f"dataset.root={demo_root}", f"hydra.run.dir={run}", "solver.max_iter=2",
                 "num_vis=0", "logger=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (run / "train.log").exists()  # Hydra's second log is gone
    records = _records(run / LOG_FILE)
    text = (run / LOG_FILE).read_text(encoding="utf-8")
    for name, message in (("detectron2", "Rank of current process: 0. World size: 1"),  # during default_setup
                          ("detectron2.engine.train_loop", "Starting training from iteration 0"),
                          ("maskseg_d2.data.register", "Registered demo_train (10 images)"),  # before default_setup
                          ("maskseg_d2.engine.train", "Evaluation on demo_val:")):
        hits = [m for n, m in records if n == name and m.startswith(message)]
        assert len(hits) == 1, (name, message, records[:40])
        assert proc.stdout.count(message) == 1, (name, message)  # once on the terminal too
    assert "\x1b[" not in text and "\x1b[" in proc.stdout  # the highlighted config: colours on the terminal only
    assert "it/s]" not in text and "%|" not in text  # no progress bars


@pytest.mark.slow
@pytest.mark.parametrize("tool, overrides, d2_line, ours", [
    ("eval", ["device=cpu", "num_worst=1", "plots=false"],
     ("detectron2.evaluation.evaluator", "Start inference on 6 batches"), ("maskseg_d2.data.register", "Registered")),
    ("predict", ["device=cpu", "progress=true", "score_threshold=0.0"],
     ("fvcore.common.checkpoint", "[Checkpointer] Loading from"), ("maskseg_d2.tools", "predicted 16 image(s)")),
    ("export", ["num_images=1"],
     ("fvcore.common.checkpoint", "[Checkpointer] Loading from"), ("maskseg_d2.tools", "exported torchscript in")),
    ("visualize", ["mode=gt_vs_pred", "device=cpu", "num_images=2"],
     ("fvcore.common.checkpoint", "[Checkpointer] Loading from"), ("maskseg_d2.tools", "wrote 3 PNG(s) to")),
])
def test_each_tool_writes_log_txt_into_its_output_folder(tool, overrides, d2_line, ours, tiny_run, demo_root, tmp_path):
    out = tmp_path / "out"
    extra = [f"input={demo_root / 'images'}"] if tool == "predict" else []
    proc = _tool(tool, f"run={tiny_run[0]}", f"output={out}", *overrides, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out / LOG_FILE)
    for name, message in (d2_line, ours):
        assert len([m for n, m in records if n == name and m.startswith(message)]) == 1, (name, message, records)
        assert proc.stdout.count(message) == 1  # the terminal shows it once (Hydra's stdout format: the message)
    text = (out / LOG_FILE).read_text(encoding="utf-8")
    assert "%|" not in text
    if tool == "predict":
        assert "%|" in proc.stderr  # its progress bar went to the terminal only
