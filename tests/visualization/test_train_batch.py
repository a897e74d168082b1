"""tools/visualize.py mode=train_batch: training images as the model receives them (the trainer's mapper), masks
included; and the train_batch.jpg a training run writes at its start."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from maskseg_d2.browse import visualize
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.errors import UserError

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")
W, H, GRAY = 200, 160, 128
OBJECT = (10, 80, 70, 150)  # x0, y0, x1, y1: left side, lower half (the grid title sits at the top)


def _one_object_dataset(root: Path) -> None:
    """One gray image, one rectangle instance on its left side, COCO format."""
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), np.full((H, W, 3), GRAY, np.uint8))
    x0, y0, x1, y1 = OBJECT
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": (x1 - x0) * (y1 - y0),
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}]}
    (root / "coco.json").write_text(json.dumps(coco))


def _one_object_overrides(root: Path, flip_prob: float) -> list[str]:
    """dataset= + augment= of :func:`_one_object_dataset`, flipped with probability ``flip_prob``, one scale."""
    return ["dataset=demo", f"dataset.root={root}", "dataset.format=coco",
            "dataset.annotations=${dataset.root}/coco.json", "dataset.classes=[thing]", "dataset.val_fraction=0",
            f"augment.flip_prob={flip_prob}", "augment.min_size_train=[160]"]


def _assert_object_on(grid_png: str, side: str) -> None:
    """The one-object grid (``cell=W cols=1``) shows the masked object on ``side`` only (right: flipped)."""
    cell = cv2.imread(grid_png)[6: 6 + H, 6: 6 + W].astype(int)  # make_grid: 6 px padding, one cell of W x H
    drawn = np.abs(cell - GRAY).max(axis=2) > 30
    drawn[:40] = False  # the cell's title (file name), top-left
    left, right = int(drawn[:, : W // 2].sum()), int(drawn[:, W // 2:].sum())
    mirror = (W - OBJECT[2], OBJECT[1], W - OBJECT[0], OBJECT[3])  # where the flip puts the object
    x0, y0, x1, y1 = OBJECT if side == "left" else mirror
    inside = drawn[y0 + 3: y1 - 3, x0 + 3: x1 - 3].mean()
    assert inside > 0.95, inside  # the mask tints the whole object, where the flip (or not) put it
    assert (left, right)[side == "left"] < 0.05 * (left, right)[side == "right"], (left, right)


@pytest.mark.parametrize("flip_prob, side", [(1.0, "right"), (0.0, "left")])
def test_train_batch_masks_follow_a_forced_flip(tmp_path, flip_prob, side):
    _one_object_dataset(tmp_path / "data")
    overrides = ["mode=train_batch", *_one_object_overrides(tmp_path / "data", flip_prob), f"output={tmp_path / 'out'}",
                 f"cell={W}", "cols=1"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("visualize", overrides=overrides)
    (grid_png,) = visualize(cfg)
    assert Path(grid_png).name == "train_batch_00.png"
    _assert_object_on(grid_png, side)


def _fake_run(run_dir: Path, data: Path, flip_prob: float) -> None:
    """A run dir as tools/train.py leaves it, for what mode=train_batch reads (no training: an empty checkpoint)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        train_cfg = compose("train", overrides=["device=cpu", *_one_object_overrides(data, flip_prob)])
    d2cfg = build_d2_cfg(train_cfg, register_dataset(train_cfg.dataset), str(run_dir))
    (run_dir / "config.yaml").write_text(d2cfg.dump())
    OmegaConf.save({"dataset": OmegaConf.to_container(train_cfg.dataset, resolve=True)},
                   run_dir / "config_resolved.yaml")
    (run_dir / "model_final.pth").touch()


def test_train_batch_of_a_run_uses_the_runs_config(tmp_path):
    """run=: the run's augmentations (a forced flip), not those of the visualize config (no flip)."""
    _one_object_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _fake_run(run_dir, tmp_path / "data", flip_prob=1.0)
    overrides = ["mode=train_batch", f"run={run_dir}", "augment.flip_prob=0.0", f"output={tmp_path / 'out'}",
                 f"cell={W}", "cols=1"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("visualize", overrides=overrides)
    (grid_png,) = visualize(cfg)
    assert grid_png == str(tmp_path / "out" / "train_batch_00.png")
    _assert_object_on(grid_png, "right")


@pytest.mark.parametrize("mode", ["curves", "pred"])
def test_a_run_mode_without_run_is_one_line(tmp_path, mode):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("visualize", overrides=[f"mode={mode}", f"output={tmp_path / 'out'}"])
    message = rf"^mode={mode} needs run=<run dir> \(a directory written by tools/train.py\)$"
    with pytest.raises(UserError, match=message):
        visualize(cfg)


def test_flip_prob_outside_0_1_is_one_line(compose_cfg):
    cfg = compose_cfg("augment.flip_prob=1.5")
    with pytest.raises(UserError, match=r"augment.flip_prob=1.5: must be in \[0, 1\]"):
        build_d2_cfg(cfg, None, "unused")


@pytest.mark.slow
def test_train_batch_reads_a_trained_run_dir(tiny_run, tmp_path):
    """The files training writes are what mode=train_batch run= reads (the run's config: see above)."""
    run_dir, _ = tiny_run
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("visualize", overrides=["mode=train_batch", f"run={run_dir}", f"output={tmp_path / 'out'}",
                                              "num_images=2", "cols=2", "cell=200"])
    (grid_png,) = visualize(cfg)
    assert grid_png == str(tmp_path / "out" / "train_batch_00.png")
    grid = cv2.imread(grid_png)
    assert grid is not None and grid.shape[1] >= 2 * 200  # two cells of 200 px side by side


@pytest.mark.slow
def test_training_run_writes_train_batch_jpg(tiny_run):
    run_dir, _ = tiny_run
    jpg = cv2.imread(str(run_dir / "train_batch.jpg"))
    assert jpg is not None and jpg.shape[0] > 100 and jpg.shape[1] >= 4 * 320  # 4 cells of 320 px (2 per batch -> 4)
