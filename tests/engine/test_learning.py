"""The model learns: trained on 4 demo images and evaluated on them, its loss falls, its AP climbs, and it finds every
true instance with the right class and the right mask orientation.

The run is ``overfit_run`` (tests/conftest.py, recipe ``OVERFIT`` on top of ``TINY``): the CPU demo model
(ResNet-18-FPN from scratch) trained 100 iterations of 2 images at lr 0.01 (20 warm-up iterations), seed 42, on the
first 4 training images of the session's demo data (10 instances: 6 cars, 4 sign boards), one scale (192 px), no
flip, and evaluated on the same 4 images.

Measured in 3 runs (seed 42 on 2 threads, seed 42 on 1 thread, seed 7 on 1 thread) of the model with 128-channel
FPN and mask head, in fp32 (before issue 18) -> asserted below. With today's 64-channel heads (still fp32: the tests
set ``solver.cpu_amp=false``), CI's run on a fresh clone (2026-12-06, seed 42, 2 threads): loss 1.931 -> 0.790
(fell 59 %), segm AP 57.7, bbox AP 60.6; the instance checks passed.

- total loss, median of iterations 80-99 vs 0-19 (Detectron2 logs 20-iteration medians):
  fell 52 / 55 / 54 % -> >= 30 %
- segm AP on the training images: 62.0 / 57.8 / 64.5 -> >= 35; bbox AP: 60.6 / 61.2 / 65.6 -> >= 35
- true instances found by a prediction of their class (score >= 0.5): 10 of 10 in each -> all
- mask IoU with the true mask, lowest of the 10: 0.75 / 0.66 / 0.74 -> >= 0.5
- mean IoU with the true masks minus mean IoU with the best of the flipped / transposed true masks:
  0.58 / 0.55 / 0.58 -> >= 0.35

Deterministic: three pytest sessions (2 threads; one machine idle, two loaded) gave the same losses and AP to the
last digit. The training (the fixture's setup) takes 76 s on an idle 2-core machine (``pytest --durations``);
CPU threads fighting over a loaded machine stretched it to 7-11 min.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_util

from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor

from maskseg_d2.engine.run import Run
from maskseg_d2.engine.train import overfit_subset

pytestmark = pytest.mark.slow

LOSS_FALL = 0.3  # the last 20 iterations' median total loss <= 70 % of the first 20 iterations'
SEGM_AP = 35.0
BBOX_AP = 35.0
MASK_IOU = 0.5  # every true instance
IOU_MARGIN = 0.35  # mean IoU with the true mask - mean IoU with the best flipped/transposed true mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _misoriented(mask: np.ndarray) -> dict[str, np.ndarray]:
    """The mask as an orientation bug would place it: flipped left-right / up-down, transposed (on the image's
    top-left square; the demo images are wider than tall, so the rest is cut off)."""
    h, w = mask.shape
    transposed = np.zeros_like(mask)
    s = min(h, w)
    transposed[:s, :s] = mask[:s, :s].T
    return {"fliplr": mask[:, ::-1], "flipud": mask[::-1, :], "transposed": transposed}


def test_loss_falls(overfit_run):
    run_dir, _ = overfit_run
    rows = [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines()]
    # Detectron2 logs every 20 iterations the median of the last 20: iterations 0-19 vs 80-99
    loss = {r["iteration"]: r["total_loss"] for r in rows if "total_loss" in r}
    first, last = loss[19], loss[max(loss)]
    assert max(loss) == 99
    assert last <= (1 - LOSS_FALL) * first, (first, last, loss)


def test_ap_on_the_training_images(overfit_run):
    _, results = overfit_run
    assert results["segm"]["AP"] >= SEGM_AP, results["segm"]
    assert results["bbox"]["AP"] >= BBOX_AP, results["bbox"]


def test_known_instances_have_their_class_and_orientation(overfit_run, demo_root):
    """Every true instance on the 4 images is found by a confident prediction (score >= 0.5) of its class, and the
    predicted masks overlap the true masks far better than the same masks flipped or transposed.

    Checked against the generator's own truth (truth.json: the painted visible masks), not the importer's output:
    a transposed import, or class ids shifted on the way to or from the model, trains and scores consistently
    with itself. A flipped mask can overlap the true one (a centred board), so orientation is judged on the mean.
    """
    run_dir, _ = overfit_run
    run = Run.open(str(run_dir), device="cpu", score_threshold=0.5)
    info = overfit_subset(run.dataset, int(run.cfg.overfit_images))
    trained = {r["file_name"].rsplit("/", 1)[-1] for r in DatasetCatalog.get(info.train_name)}
    truth = json.loads((demo_root / "truth.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    images = {im["id"]: im for im in truth["images"] if im["file_name"] in trained}
    anns = [a for a in truth["annotations"] if a["image_id"] in images]
    assert len(images) == 4 and {names[a["category_id"]] for a in anns} == {"car", "sign board"}

    predictor = DefaultPredictor(run.d2cfg)
    found, misoriented = [], []
    for image_id, image in images.items():
        instances = predictor(read_image(str(demo_root / "images" / image["file_name"]), "BGR"))["instances"]
        masks = instances.pred_masks.numpy()
        for ann in (a for a in anns if a["image_id"] == image_id):
            gt = mask_util.decode(ann["segmentation"]).astype(bool)
            where = (image["file_name"], ann["id"], names[ann["category_id"]])
            assert len(masks) > 0, where
            ious = [_iou(m, gt) for m in masks]
            best = int(np.argmax(ious))
            assert run.thing_classes[int(instances.pred_classes[best])] == names[ann["category_id"]], where
            assert ious[best] >= MASK_IOU, (where, ious[best])
            found.append(ious[best])
            misoriented.append(max(_iou(masks[best], m) for m in _misoriented(gt).values()))
    assert np.mean(found) >= np.mean(misoriented) + IOU_MARGIN, (found, misoriented)
