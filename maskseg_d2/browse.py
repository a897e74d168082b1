"""``tools/visualize.py``: look at a dataset's ground truth, a run's predictions and its training curves.

Modes (``mode=``):

* ``gt``: ground truth of any dataset config (``dataset=<configs/dataset/*>``), as grid pages;
* ``pred``: a run's predictions on its validation (or training) split;
* ``gt_vs_pred``: ground truth (left) and prediction (right) per image, plus grid pages;
* ``curves``: the run's loss / AP curves from ``metrics.json``.

Images are drawn with Detectron2's ``Visualizer`` (slow, but the best looking); ``tools/predict.py``
uses the fast OpenCV drawing instead.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode, Visualizer

from .data import register_dataset
from .engine.run import Run
from .errors import UserError
from .visualization import draw_gt_vs_pred
from .visualization.curves import plot_training_curves
from .visualization.overlay import draw_text

__all__ = ["MODES", "make_grid", "save_grids", "draw_ground_truth", "draw_run_predictions", "plot_run_curves",
           "visualize"]

MODES = ("gt", "pred", "gt_vs_pred", "curves")
_SPLITS = ("train", "val", "all")


def make_grid(images: Sequence[np.ndarray], cols: int = 4, cell: int = 384,
              titles: Sequence[str] | None = None, pad: int = 6) -> np.ndarray:
    """Tile images into one picture; each is scaled to fit a ``cell`` x ``cell`` square (aspect kept),
    each row as tall as its tallest image.

    Args:
        images (list[np.ndarray]): (H, W, 3) uint8 images, all in the same channel order.
        cols (int): images per row.
        cell (int): the side of a cell in pixels.
        titles (list[str] or None): a caption per image (ASCII), drawn in its top-left corner.
        pad (int): white space between cells.

    Returns:
        np.ndarray: the grid, uint8, same channel order as the inputs.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    cols = max(1, min(cols, len(images)))
    small = []
    for img in images:
        h, w = img.shape[:2]
        s = cell / max(h, w)
        small.append(cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR))
    rows = [small[i: i + cols] for i in range(0, len(small), cols)]
    heights = [max(im.shape[0] for im in row) for row in rows]  # rows as tall as their tallest image
    grid = np.full((sum(heights) + pad * (len(rows) + 1), cols * (cell + pad) + pad, 3), 255, np.uint8)
    y = pad
    for r, (row, rh) in enumerate(zip(rows, heights)):
        for c, im in enumerate(row):
            x = pad + c * (cell + pad)
            grid[y: y + im.shape[0], x: x + im.shape[1]] = im
            if titles:
                text = str(titles[r * cols + c])[:60].encode("ascii", "replace").decode()
                draw_text(grid, text, (x, y + 18), (60, 60, 60), 0.45)
        y += rh + pad
    return grid


def save_grids(images: Sequence[np.ndarray], titles: Sequence[str], out_dir: str, prefix: str,
               per_page: int = 16, cols: int = 4, cell: int = 384) -> list[str]:
    """Write ``<out_dir>/<prefix>_<page>.png`` grids of ``per_page`` RGB images each.

    Returns:
        list[str]: the PNG paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for p, start in enumerate(range(0, len(images), max(per_page, 1))):
        grid = make_grid(images[start: start + per_page], cols, cell, titles[start: start + per_page])
        path = os.path.join(out_dir, f"{prefix}_{p:02d}.png")
        cv2.imwrite(path, grid[:, :, ::-1])
        paths.append(path)
    return paths


def _records(names: Sequence[str], num_images: int | None) -> list[dict]:
    records = [r for n in names for r in DatasetCatalog.get(n)]
    return records[:num_images] if num_images else records


def _title(record: dict) -> str:
    n = len(record.get("annotations", []))
    return f"{os.path.basename(record['file_name'])}  ({n})"


def draw_ground_truth(dataset_cfg: Any, out_dir: str, split: str = "train", num_images: int | None = 16,
                      cols: int = 4, cell: int = 384) -> list[str]:
    """Register a dataset config and draw its ground truth as grid pages ``gt_<split>_<page>.png``.

    Args:
        dataset_cfg (DictConfig): a ``configs/dataset/*.yaml`` node.
        out_dir (str): where the PNGs go.
        split (str): ``train``, ``val`` or ``all``.
        num_images (int or None): the first N images of the split (None: all).
        cols (int): images per grid row (16 per page).
        cell (int): grid cell size in pixels.

    Returns:
        list[str]: the grid PNGs.
    """
    if split not in _SPLITS:
        raise UserError(f"split={split}: use one of {', '.join(_SPLITS)}")
    info = register_dataset(dataset_cfg)
    names = {"train": [info.train_name], "val": [info.val_name],
             "all": [info.train_name, info.val_name]}[split]
    metadata = MetadataCatalog.get(info.train_name)
    images, titles = [], []
    for record in _records(names, num_images):
        rgb = read_image(record["file_name"], format="RGB")  # EXIF applied, as in training
        images.append(Visualizer(rgb, metadata).draw_dataset_dict(record).get_image())
        titles.append(_title(record))
    if not images:
        raise UserError(f"{info.annotations}: the {split} split is empty — try split=all")
    return save_grids(images, titles, out_dir, f"gt_{split}", cols=cols, cell=cell)


def draw_run_predictions(run_dir: str, out_dir: str, side_by_side: bool = True, split: str = "val",
                         num_images: int | None = 16, score_threshold: float = 0.5,
                         checkpoint: str | None = None, device: str = "auto", cols: int = 4,
                         cell: int = 384) -> list[str]:
    """Predict a run's split and draw each image (ground truth | prediction when ``side_by_side``).

    Writes ``<out_dir>/<image>.png`` per image and ``<prefix>_<page>.png`` grids.

    Args:
        run_dir (str): a run directory.
        out_dir (str): where the PNGs go.
        side_by_side (bool): ground truth left, prediction right; else the prediction only.
        split (str): ``val`` or ``train`` of the run's dataset.
        num_images (int or None): the first N images (None: all).
        score_threshold (float): predictions below are not drawn.
        checkpoint (str or None): None: model_best.pth, else model_final.pth, else the last.
        device (str): auto | cpu | cuda.
        cols (int): images per grid row.
        cell (int): grid cell size in pixels.

    Returns:
        list[str]: per-image PNGs followed by the grid PNGs.
    """
    if split not in ("val", "train"):
        raise UserError(f"split={split}: use val or train")
    run = Run.open(run_dir, checkpoint, device, score_threshold=score_threshold)
    predictor = DefaultPredictor(run.d2cfg)
    name = run.split_name(split)
    metadata = MetadataCatalog.get(name)
    os.makedirs(out_dir, exist_ok=True)
    paths, images, titles = [], [], []
    for record in _records([name], num_images):
        rgb = read_image(record["file_name"], format="RGB")
        instances = predictor(rgb[:, :, ::-1].copy())["instances"].to("cpu")
        if side_by_side:
            canvas = draw_gt_vs_pred(rgb, record, instances, metadata)
        else:
            vis = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
            canvas = vis.draw_instance_predictions(instances).get_image()
        path = os.path.join(out_dir, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png")
        cv2.imwrite(path, canvas[:, :, ::-1])
        paths.append(path)
        images.append(canvas)
        n_gt = len(record["annotations"])
        titles.append(f"{os.path.basename(record['file_name'])}  gt {n_gt} / pred {len(instances)}")
    if not images:
        raise UserError(f"{run_dir}: the {split} split of its dataset is empty — try split="
                        f"{'train' if split == 'val' else 'val'}, or check the dataset's val_fraction")
    prefix = f"{'gt_vs_pred' if side_by_side else 'pred'}_{split}"
    grid_cols = max(1, cols // 2) if side_by_side else cols
    return paths + save_grids(images, titles, out_dir, prefix, per_page=4 * grid_cols, cols=grid_cols,
                              cell=2 * cell if side_by_side else cell)


def plot_run_curves(run_dir: str, out_png: str) -> str:
    """Draw ``<run_dir>/metrics.json`` as loss / AP curves (see :mod:`maskseg_d2.visualization.curves`).

    Returns:
        str: ``out_png``.
    """
    metrics = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(metrics):
        raise UserError(f"{metrics}: not found — pass a run dir written by tools/train.py")
    if plot_training_curves(metrics, out_png) is None:
        raise UserError(f"{metrics}: no training loss logged yet — wait for the first 20 iterations")
    return out_png


def visualize(cfg: Any) -> list[str]:
    """Run one mode of ``configs/visualize.yaml`` (what ``tools/visualize.py`` calls).

    Args:
        cfg (DictConfig): the composed visualize config.

    Returns:
        list[str]: the written PNGs.
    """
    mode = str(cfg.mode)
    if mode not in MODES:
        raise UserError(f"mode={mode}: use one of {', '.join(MODES)}")
    num = int(cfg.num_images) if cfg.num_images else None
    if mode == "gt":
        if cfg.dataset is None:
            raise UserError("mode=gt needs a dataset: dataset=<name of configs/dataset/*.yaml>")
        out = str(cfg.output or os.path.join(cfg.paths.log_dir, "visualize", str(cfg.dataset.name)))
        return draw_ground_truth(cfg.dataset, out, str(cfg.split), num, int(cfg.cols), int(cfg.cell))
    if not cfg.run:
        raise UserError(f"mode={mode} needs run=<run dir> (a directory written by tools/train.py)")
    run_dir = str(cfg.run)
    out = str(cfg.output or os.path.join(run_dir, "visualize"))
    if mode == "curves":
        return [plot_run_curves(run_dir, os.path.join(out, "curves.png"))]
    split = "val" if str(cfg.split) == "all" else str(cfg.split)
    checkpoint = str(cfg.checkpoint) if cfg.checkpoint else None
    return draw_run_predictions(run_dir, out, mode == "gt_vs_pred", split, num, float(cfg.score_threshold),
                                checkpoint, str(cfg.device), int(cfg.cols), int(cfg.cell))
