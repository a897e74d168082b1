"""Every ``configs/model/*.yaml`` builds a real Detectron2 Mask R-CNN that trains: one forward/backward in
training mode on a small synthetic image, from scratch (no download). Parametrized over the files found, so a
new model config is covered the day it is added."""
from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from maskseg_d2.config import build_d2_cfg

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
# Residual blocks per stage (res2..res5) of each ResNet depth (Detectron2's build_resnet_backbone).
BLOCKS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
H, W = 128, 160


def _batch() -> list[dict]:
    """One (3, H, W) image with one GT instance: a filled rectangle of class 1 (of 2)."""
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, H, W), dtype=np.uint8))
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    mask[0, 30:90, 40:120] = True
    image[:, mask[0]] = 200  # the object is visible in the pixels
    inst = Instances((H, W))
    inst.gt_boxes = Boxes(torch.tensor([[40.0, 30.0, 120.0, 90.0]]))
    inst.gt_classes = torch.tensor([1])
    inst.gt_masks = BitMasks(mask)
    return [{"image": image, "height": H, "width": W, "instances": inst}]


def test_every_model_config_is_found():
    assert {"r18_fpn", "r18_fpn_scratch", "r50_fpn_1x", "r50_fpn_3x", "r101_fpn_3x"} <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_model_config_builds_and_trains_one_step(model, compose_cfg, tmp_path):
    cfg = compose_cfg(f"model={model}", "model.weights=scratch", "device=cpu")
    dataset = SimpleNamespace(thing_classes=["car", "sign board"], train_name="unused_train",
                              val_name="unused_val", mask_format="bitmask", num_train=1)
    d2cfg = build_d2_cfg(cfg, dataset, str(tmp_path))
    depth = int(re.match(r"r(\d+)_", model).group(1))
    assert d2cfg.MODEL.RESNETS.DEPTH == depth and d2cfg.MODEL.WEIGHTS == ""

    torch.manual_seed(0)
    net = build_model(d2cfg)  # on d2cfg.MODEL.DEVICE = cpu
    stages = [len(getattr(net.backbone.bottom_up, f"res{i}")) for i in (2, 3, 4, 5)]
    assert stages == BLOCKS[depth], f"{model}: ResNet-{depth} should have {BLOCKS[depth]} blocks, built {stages}"
    assert net.roi_heads.box_predictor.cls_score.out_features == 2 + 1  # NUM_CLASSES from the data + background

    net.train()
    with EventStorage(0):  # the heads log training statistics to it, as under the Trainer
        losses = net(_batch())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    assert all(math.isfinite(v.item()) for v in losses.values()), {k: v.item() for k, v in losses.items()}
    sum(losses.values()).backward()

    stem = net.backbone.bottom_up.stem.conv1.weight  # scratch: FREEZE_AT=0, the stem trains too
    assert stem.requires_grad and stem.grad is not None
    grads = [p.grad for p in net.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert stem.grad.abs().sum() > 0
