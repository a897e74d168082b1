"""Training's vis/ images draw predictions at ``vis_score_threshold`` (0.5); the evaluation keeps 0.05."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.engine.run import Run
from maskseg_d2.visualization import draw_gt_vs_pred, draw_val_predictions

from detectron2.data import DatasetCatalog, MetadataCatalog  # isort: skip
from detectron2.data.detection_utils import read_image  # isort: skip
from detectron2.engine import DefaultPredictor  # isort: skip
from detectron2.structures import Boxes, Instances  # isort: skip


class _FixedPredictor:
    """Two square detections on a 100x200 image: score 0.3 on the left half, 0.9 on the right half."""

    def __call__(self, bgr: np.ndarray) -> dict:
        h, w = bgr.shape[:2]
        inst = Instances((h, w))
        masks = torch.zeros((2, h, w), dtype=torch.bool)
        masks[0, 30:70, 30:70] = True
        masks[1, 30:70, 130:170] = True
        inst.pred_masks = masks
        inst.pred_boxes = Boxes(torch.tensor([[30.0, 30, 70, 70], [130.0, 30, 170, 70]]))
        inst.scores = torch.tensor([0.3, 0.9])
        inst.pred_classes = torch.tensor([0, 0])
        return {"instances": inst}


def _pred_panel(path, w: int) -> np.ndarray:
    canvas = cv2.imread(str(path))
    return canvas[:, w + 8:]  # ground truth | 8 px gap | prediction


@pytest.mark.parametrize("threshold, drawn", [(0.5, {"right"}), (0.2, {"left", "right"})])
def test_only_predictions_above_the_threshold_are_drawn(tmp_path, threshold, drawn):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((100, 200, 3), 128, np.uint8))
    MetadataCatalog.get("vis_threshold_test").set(thing_classes=["thing"])
    record = {"file_name": str(image), "height": 100, "width": 200, "image_id": 0, "annotations": []}
    (path,) = draw_val_predictions(_FixedPredictor(), [record], "vis_threshold_test", str(tmp_path / "vis"),
                                   score_threshold=threshold)
    pred = _pred_panel(path, 200).astype(int)
    changed = np.abs(pred - 128).max(axis=2) > 20
    sides = {"left": changed[:, :100].sum(), "right": changed[:, 100:].sum()}
    assert {side for side, n in sides.items() if n > 200} == drawn, sides  # a 40x40 mask tints 1600 px


def test_default_is_half_and_the_evaluation_threshold_stays_low(compose_cfg, demo_root):
    cfg = compose_cfg("experiment=demo", f"dataset.root={demo_root}")
    assert cfg.vis_score_threshold == 0.5
    d2cfg = build_d2_cfg(cfg, register_dataset(cfg.dataset), str(demo_root / "unused_run"))
    assert d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.05  # Detectron2's default, what COCO AP needs


@pytest.mark.slow
def test_training_vis_images_hide_low_scores(tiny_run):
    """The shared run predicts at SCORE_THRESH_TEST=0 (4 iterations: every score < 0.5): its vis/ images must show
    none of those predictions, at the default vis_score_threshold."""
    run_dir, _ = tiny_run
    run = Run.open(str(run_dir), "model_final.pth", "cpu")
    vis = sorted((run_dir / "vis").glob("*.png"))
    assert vis
    name = run.split_name("val")
    record = next(r for r in DatasetCatalog.get(name) if Path(r["file_name"]).stem == vis[0].stem)
    bgr = read_image(record["file_name"], format="BGR")
    instances = DefaultPredictor(run.d2cfg)(bgr)["instances"].to("cpu")
    assert len(instances) > 0 and float(instances.scores.max()) < 0.5  # something to hide, all of it below 0.5
    saved = cv2.imread(str(vis[0]))[:, :, ::-1]
    draw = [draw_gt_vs_pred(bgr[:, :, ::-1], record, inst, MetadataCatalog.get(name)) for inst in (instances[:0],
                                                                                                   instances)]
    assert np.array_equal(saved, draw[0])  # ground truth | the photo with no prediction drawn
    assert not np.array_equal(saved, draw[1])  # what drawing at the evaluation's threshold would have shown
