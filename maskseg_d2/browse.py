"""``tools/visualize.py``: look at a dataset's ground truth, a run's predictions and its training curves.

Modes (``mode=``):

* ``gt``: ground truth of any dataset config (``dataset=<configs/dataset/*>``), as grid pages;
* ``pred``: a run's predictions on its validation (or training) split;
* ``gt_vs_pred``: ground truth (left) and prediction (right) per image, plus grid pages;
* ``curves``: the run's loss / AP curves from ``metrics.json``;
* ``train_batch``: training images as the model receives them (the trainer's mapper: crop, resize, flip, colour,
  JPEG) with their masks, from a run's own config (``run=``) or from ``dataset=`` + ``augment=``.

Images are drawn with Detectron2's ``Visualizer`` (slow, but the best looking); ``tools/predict.py``
uses the fast OpenCV drawing instead.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode

from .config import build_d2_cfg
from .data import register_dataset
from .engine.run import Run
from .engine.trainer import Trainer
from .errors import UserError
from .visualization import UnicodeVisualizer, draw_gt_vs_pred
from .visualization.curves import plot_training_curves
from .visualization.grid import make_grid
from .visualization.train_batch import draw_mapped_sample, sample_title

__all__ = ["MODES", "make_grid", "save_grids", "draw_ground_truth", "draw_run_predictions", "plot_run_curves",
           "draw_training_samples", "visualize"]

MODES = ("gt", "pred", "gt_vs_pred", "curves", "train_batch")
_SPLITS = ("train", "val", "all")
_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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
        images.append(UnicodeVisualizer(rgb, metadata).draw_dataset_dict(record).get_image())
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
            vis = UnicodeVisualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
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


def _train_d2cfg(cfg: Any, out_dir: str) -> Any:
    """The Detectron2 config tools/train.py would build for ``dataset=`` and ``augment=`` of ``cfg`` (the other
    groups at configs/train.yaml's defaults)."""
    if GlobalHydra.instance().is_initialized():  # inside tools/visualize.py: same config search path
        train_cfg = compose("train")
    else:
        with initialize_config_dir(config_dir=_CONFIGS, version_base="1.3"):
            train_cfg = compose("train")
    with open_dict(train_cfg):
        train_cfg.dataset, train_cfg.augment = cfg.dataset, cfg.augment
    return build_d2_cfg(train_cfg, register_dataset(cfg.dataset), out_dir)


def draw_training_samples(d2cfg: Any, out_dir: str, num_images: int | None = 16, cols: int = 4,
                          cell: int = 384) -> list[str]:
    """Draw training images as the model receives them, with their instances, as ``train_batch_<page>.png``.

    Like Detectron2's ``tools/visualize_data.py --source dataloader``: the trainer's own mapper
    (:meth:`~maskseg_d2.engine.trainer.Trainer.mapped_train_samples`), so every crop, resize, flip, colour and JPEG
    augmentation of the config is applied to image, masks and boxes alike.

    Args:
        d2cfg (CfgNode): a training config (a run's, or :func:`maskseg_d2.config.build_d2_cfg`'s).
        out_dir (str): where the PNGs go.
        num_images (int or None): the first N training images (None: 16).
        cols (int): images per grid row.
        cell (int): grid cell size in pixels.

    Returns:
        list[str]: the grid PNGs.
    """
    samples = Trainer.mapped_train_samples(d2cfg, num_images or 16)
    if not samples:
        raise UserError(f"{d2cfg.DATASETS.TRAIN[0]}: no training image with instances to draw — check the "
                        f"dataset's split (val_fraction) and its annotations")
    metadata = MetadataCatalog.get(d2cfg.DATASETS.TRAIN[0])
    images = [draw_mapped_sample(s, metadata, d2cfg.INPUT.FORMAT, cell) for s in samples]
    return save_grids(images, [sample_title(s) for s in samples], out_dir, "train_batch", cols=cols, cell=cell)


def _dataset_output(cfg: Any, mode: str) -> str:
    """The output folder of a mode drawn from ``dataset=``; one line when no dataset is given."""
    if cfg.dataset is None:
        raise UserError(f"mode={mode} needs a dataset: dataset=<name of configs/dataset/*.yaml>")
    return str(cfg.output or os.path.join(cfg.paths.log_dir, "visualize", str(cfg.dataset.name)))


def _train_batch_source(cfg: Any) -> tuple[Any, str]:
    """``mode=train_batch``'s training config and output folder: the run's (``run=``), else the one
    ``dataset=`` + ``augment=`` build."""
    if not cfg.run:
        out = _dataset_output(cfg, "train_batch")
        return _train_d2cfg(cfg, out), out
    run_dir = str(cfg.run)
    run = Run.open(run_dir, str(cfg.checkpoint) if cfg.checkpoint else None, "cpu")
    run.split_name("train")  # registers the run's data under the names its config uses
    return run.d2cfg, str(cfg.output or os.path.join(run_dir, "visualize"))


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
    if mode == "train_batch":
        return draw_training_samples(*_train_batch_source(cfg), num, int(cfg.cols), int(cfg.cell))
    if mode == "gt":
        out = _dataset_output(cfg, mode)
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
