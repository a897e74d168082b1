"""Fast OpenCV overlays, grids, and tools/visualize.py's ground-truth mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from maskseg_d2.browse import make_grid, plot_run_curves, save_grids, visualize
from maskseg_d2.errors import UserError
from maskseg_d2.predict.detections import Detections, mask_boxes
from maskseg_d2.visualization.overlay import class_colors, draw_detections

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")


def _scene() -> tuple[np.ndarray, Detections]:
    img = np.full((120, 160, 3), 100, np.uint8)
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 20:60, 20:80] = True
    masks[1, 70:110, 90:150] = True
    return img, Detections(mask_boxes(masks), np.array([0.9, 0.6], np.float32), np.array([0, 1]), masks)


def test_colors_are_distinct_and_stable():
    colors = class_colors(6)
    assert len(set(colors)) == 6 and colors[:2] == class_colors(2)
    assert all(0 <= v <= 255 for c in colors for v in c)


def test_draw_detections_tints_masks_only():
    img, dets = _scene()
    out = draw_detections(img, dets, ["car", "sign board"], alpha=0.5, show_boxes=False, show_labels=False)
    assert (
        out.shape == img.shape and out.dtype == np.uint8 and np.array_equal(img, _scene()[0])
    )  # input untouched
    colors = class_colors(2)
    inner = out[40, 50].astype(int)  # inside mask 0, away from its outline
    assert np.allclose(inner, (np.array(colors[0]) + 100) / 2, atol=2)
    assert np.allclose(out[90, 120].astype(int), (np.array(colors[1]) + 100) / 2, atol=2)
    assert np.array_equal(out[5, 5], img[5, 5]) and np.array_equal(
        out[115, 10], img[115, 10]
    )  # outside: unchanged
    labelled = draw_detections(img, dets, ["car", "sign board"])
    assert (labelled != out).any()  # boxes and "car 90%" labels drawn on top
    empty = Detections.empty(120, 160)
    assert np.array_equal(draw_detections(img, empty, ["car"]), img)


def test_make_grid_and_pages(tmp_path):
    imgs = [np.full((60, 120, 3), 50 * i, np.uint8) for i in range(5)]
    grid = make_grid(imgs, cols=2, cell=100, pad=4)
    assert grid.shape == (3 * 50 + 4 * 4, 2 * 104 + 4, 3)  # rows as tall as the 2:1 images
    assert (grid[4 + 25, 4 + 50] == 0).all() and (grid[4 + 25, 108 + 50] == 50).all()
    paths = save_grids(imgs, [f"im{i}" for i in range(5)], str(tmp_path), "p", per_page=2, cols=2, cell=64)
    assert [Path(p).name for p in paths] == ["p_00.png", "p_01.png", "p_02.png"]
    assert cv2.imread(paths[2]).shape[1] == 64 + 2 * 6  # last page: one image
    with pytest.raises(ValueError):
        make_grid([])


def test_curves_need_metrics(tmp_path):
    with pytest.raises(UserError, match="metrics.json: not found"):
        plot_run_curves(str(tmp_path), str(tmp_path / "c.png"))
    (tmp_path / "metrics.json").write_text(
        '{"iteration": 19, "total_loss": 2.0, "loss_cls": 1.0}\n'
        '{"iteration": 39, "total_loss": 1.5, "loss_cls": 0.7, "segm/AP": 3.5}\n'
    )
    out = plot_run_curves(str(tmp_path), str(tmp_path / "v" / "c.png"))
    assert Path(out).read_bytes()[:4] == b"\x89PNG"


def test_visualize_ground_truth_of_a_dataset_config(demo_root, tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(
            "visualize",
            overrides=[
                "mode=gt",
                "dataset=demo",
                f"dataset.root={demo_root}",
                "split=all",
                "num_images=5",
                "cols=3",
                "cell=128",
                f"output={tmp_path}",
            ],
        )
    paths = visualize(cfg)
    assert [Path(p).name for p in paths] == ["gt_all_00.png"]
    grid = cv2.imread(paths[0])
    assert grid.shape[1] == 3 * (128 + 6) + 6 and (grid != 255).any()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        bad = compose("visualize", overrides=["mode=pred"])
    with pytest.raises(UserError, match="needs run="):
        visualize(bad)
