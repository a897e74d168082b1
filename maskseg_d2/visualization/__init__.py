"""Masked images: predictions (and ground truth beside them) drawn with Detectron2's Visualizer.

Also: :mod:`.overlay` (fast OpenCV drawing used by ``tools/predict.py``), :mod:`.fonts` (class names in any
language) and :mod:`.curves`. The
``tools/visualize.py`` back-end that puts them together for a dataset or a run is :mod:`maskseg_d2.browse`.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

import cv2
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import ColorMode

from .fonts import UnicodeVisualizer
from .overlay import class_colors, draw_detections

__all__ = ["draw_gt_vs_pred", "draw_val_predictions", "draw_detections", "class_colors", "UnicodeVisualizer"]


def draw_gt_vs_pred(image_rgb: np.ndarray, record: dict, instances, metadata) -> np.ndarray:
    """Side by side: ground truth (left) and predicted masks/boxes/scores (right), RGB uint8."""
    gt = UnicodeVisualizer(image_rgb, metadata, scale=1.0).draw_dataset_dict(record).get_image()
    pred = UnicodeVisualizer(image_rgb, metadata, scale=1.0, instance_mode=ColorMode.IMAGE)
    pred = pred.draw_instance_predictions(instances.to("cpu")).get_image()
    gap = np.full((gt.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([gt, gap, pred], axis=1)


def draw_val_predictions(predictor, records: Sequence[dict], dataset_name: str, out_dir: str,
                         score_threshold: float = 0.5) -> list[str]:
    """Run ``predictor`` (a DefaultPredictor) on ``records`` and write ``<out_dir>/<image>.png``.

    Args:
        predictor (DefaultPredictor): the model; its own ``SCORE_THRESH_TEST`` stays as evaluated (0.05 keeps
            the low-score detections AP needs).
        records (list[dict]): Detectron2 dataset dicts (ground truth drawn on the left).
        dataset_name (str): registered name, for the class names.
        out_dir (str): where the PNGs go.
        score_threshold (float): predictions below are not drawn (0.5, as Detectron2's demo: a picture
            buried under 5% boxes shows nothing).

    Returns:
        list[str]: the written PNG paths.
    """
    metadata = MetadataCatalog.get(dataset_name)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for record in records:
        bgr = read_image(record["file_name"], format="BGR")  # EXIF applied, as in training
        instances = predictor(bgr)["instances"].to("cpu")
        instances = instances[instances.scores >= score_threshold]
        canvas = draw_gt_vs_pred(bgr[:, :, ::-1], record, instances, metadata)
        path = os.path.join(out_dir, os.path.splitext(os.path.basename(record["file_name"]))[0] + ".png")
        cv2.imwrite(path, canvas[:, :, ::-1])
        paths.append(path)
    return paths
