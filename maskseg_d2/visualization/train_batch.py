"""What the model trains on: mapped training samples (after crop, resize, flip, colour and JPEG augmentations)
drawn with their instances, as Detectron2's ``tools/visualize_data.py --source dataloader`` does.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from detectron2.data.detection_utils import convert_image_to_rgb

from .fonts import UnicodeVisualizer
from .grid import make_grid
from .overlay import class_colors

__all__ = ["draw_mapped_sample", "sample_title", "draw_train_batch"]


def draw_mapped_sample(sample: dict, metadata, image_format: str = "BGR", size: int = 384) -> np.ndarray:
    """One mapped training sample with its ground truth: masks, boxes and class names.

    Args:
        sample (dict): a :class:`~detectron2.data.DatasetMapper` output: ``image`` (C, H, W) tensor in
            ``image_format``, ``instances`` with ``gt_boxes``, ``gt_classes`` and ``gt_masks`` (polygons or bitmasks).
        metadata (Metadata): ``thing_classes`` of the dataset.
        image_format (str): ``INPUT.FORMAT`` of the config that built the mapper.
        size (int): longest side of the drawing in pixels (drawn at that size: matplotlib's cost grows with it).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    rgb = convert_image_to_rgb(sample["image"].permute(1, 2, 0).cpu().numpy(), image_format)
    vis = UnicodeVisualizer(rgb, metadata, scale=size / max(rgb.shape[:2]))
    fields = sample["instances"].get_fields() if "instances" in sample else {}
    names = metadata.get("thing_classes", [])
    classes = [int(i) for i in fields.get("gt_classes", [])]
    # one colour per class, the overlays' palette (Detectron2 picks a random colour per instance)
    palette = [tuple(c / 255 for c in bgr[::-1]) for bgr in class_colors(len(names))]
    colors = [palette[i % len(palette)] for i in classes]
    labels = [names[i] if i < len(names) else str(i) for i in classes]
    return vis.overlay_instances(labels=labels or None, boxes=fields.get("gt_boxes"), masks=fields.get("gt_masks"),
                                 assigned_colors=colors or None).get_image()


def draw_train_batch(samples: Sequence[dict], metadata, image_format: str = "BGR", cols: int = 4,
                     cell: int = 384) -> np.ndarray:
    """Mapped training samples in a grid, each titled with its file name and instance count.

    Args:
        samples (list[dict]): :class:`~detectron2.data.DatasetMapper` outputs.
        metadata (Metadata): ``thing_classes`` of the dataset.
        image_format (str): ``INPUT.FORMAT``.
        cols (int): samples per grid row.
        cell (int): grid cell size in pixels.

    Returns:
        np.ndarray: the grid, uint8 RGB.
    """
    images = [draw_mapped_sample(s, metadata, image_format, cell) for s in samples]
    return make_grid(images, cols, cell, [sample_title(s) for s in samples])


def sample_title(sample: dict) -> str:
    """``<file name>  (<instances>)`` of a mapped sample."""
    count = len(sample["instances"]) if "instances" in sample else 0
    return f"{os.path.basename(str(sample.get('file_name', '')))}  ({count})"
