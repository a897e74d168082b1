"""``Detections``: one image's predicted instances as NumPy arrays (what every output writer reads)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detections", "mask_boxes"]


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of masks (the extent of their pixels), ``XYXY_ABS`` in pixel-corner coordinates.

    Args:
        masks (np.ndarray): (N, H, W) bool.

    Returns:
        np.ndarray: (N, 4) float32 ``x0, y0, x1, y1``; all zeros for an empty mask.
    """
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


@dataclass
class Detections:
    """Predicted (or ground-truth) instances of one image, highest score first.

    Attributes:
        boxes (np.ndarray): (N, 4) float32 ``XYXY_ABS`` boxes in image pixels.
        scores (np.ndarray): (N,) float32 confidences in [0, 1] (1.0 for ground truth).
        classes (np.ndarray): (N,) int64 class indices into ``thing_classes``.
        masks (np.ndarray): (N, H, W) bool masks at the image's full resolution.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def image_size(self) -> tuple[int, int]:
        """tuple[int, int]: (height, width) of the masks."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def select(self, keep: np.ndarray) -> "Detections":
        """Detections: the instances picked by a bool mask or an index array, in that order."""
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep], self.masks[keep])

    @classmethod
    def empty(cls, height: int, width: int) -> "Detections":
        """Detections: no instance on an ``height`` x ``width`` image."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, height, width), bool))

    @classmethod
    def from_instances(cls, instances) -> "Detections":
        """From Detectron2 ``Instances`` with ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_masks``.

        Args:
            instances (Instances): model output for one image (any device), masks already pasted.

        Returns:
            Detections: sorted by descending score.
        """
        instances = instances.to("cpu")
        h, w = instances.image_size
        if len(instances) == 0:
            return cls.empty(h, w)
        scores = instances.scores.float().numpy()
        order = np.argsort(-scores, kind="stable")
        return cls(
            boxes=instances.pred_boxes.tensor.float().numpy()[order],
            scores=scores[order],
            classes=instances.pred_classes.numpy().astype(np.int64)[order],
            masks=instances.pred_masks.numpy().astype(bool, copy=False)[order],
        )

    @classmethod
    def from_record(cls, record: dict) -> "Detections":
        """Ground truth of a Detectron2 dataset dict (polygons or RLE) as detections with score 1.

        Args:
            record (dict): a standard dataset dict with ``height``, ``width`` and ``annotations``.

        Returns:
            Detections: one instance per annotation, boxes = mask extents.
        """
        from detectron2.data.detection_utils import annotations_to_instances

        h, w = int(record["height"]), int(record["width"])
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        if not anns:
            return cls.empty(h, w)
        inst = annotations_to_instances(anns, (h, w), mask_format="bitmask")
        masks = inst.gt_masks.tensor.numpy().astype(bool)
        return cls(mask_boxes(masks), np.ones(len(anns), np.float32),
                   inst.gt_classes.numpy().astype(np.int64), masks)
