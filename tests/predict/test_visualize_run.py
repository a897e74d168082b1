"""tools/visualize.py on a run: predictions on its validation split, beside the ground truth, and curves."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from hydra import compose, initialize_config_dir

from maskseg_d2.browse import visualize

pytestmark = pytest.mark.slow

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("visualize", overrides=list(overrides))


def test_visualize_run_modes(predict_run, tmp_path):
    common = [f"run={predict_run}", "device=cpu", "num_images=2", "score_threshold=0.0", "cell=128"]
    side = visualize(_cfg("mode=gt_vs_pred", *common, f"output={tmp_path / 'a'}"))
    assert len(side) == 3 and Path(side[-1]).name == "gt_vs_pred_val_00.png"
    one, pair = cv2.imread(side[0]), cv2.imread(side[-1])
    assert one.shape[1] > 2 * one.shape[0]  # ground truth | prediction of a 4:3 photo
    pred = visualize(_cfg("mode=pred", *common, "split=train", f"output={tmp_path / 'b'}"))
    assert Path(pred[-1]).name == "pred_train_00.png" and cv2.imread(pred[0]).shape[:2] == (192, 256)
    curves = visualize(_cfg("mode=curves", f"run={predict_run}", f"output={tmp_path / 'c'}"))
    assert Path(curves[0]).read_bytes()[:4] == b"\x89PNG" and pair is not None
