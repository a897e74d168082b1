"""Fast masked images with OpenCV: colour masks, outlines, boxes, class + score labels.

Detectron2's ``Visualizer`` renders through matplotlib (tenths of a second per image); this draws the
same information with a handful of OpenCV calls on the instances' box crops, a few milliseconds per
image, so it keeps up with batched inference on folders and videos. ``tools/visualize.py`` keeps the
Visualizer where looks matter more than speed.
"""
from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from .fonts import text_mask

__all__ = ["class_colors", "draw_detections", "draw_text"]


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct, saturated BGR colours, one per class (golden-ratio hue steps, stable per class index).

    Args:
        num_classes (int): number of classes.

    Returns:
        list[tuple[int, int, int]]: BGR colours.
    """
    colors = []
    for i in range(max(num_classes, 1)):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.85, 0.95)
        colors.append((int(b * 255), int(g * 255), int(r * 255)))
    return colors


def _crop_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0),
            min(int(np.ceil(x1)) + 1, w), min(int(np.ceil(y1)) + 1, h))


def draw_text(img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int],
              scale: float = 0.5, thickness: int = 1) -> None:
    """Write ``text`` in white on a filled ``color`` box whose bottom-left corner is ``org`` (in place).

    The box is moved inside the image when it would leave it. Any language: the glyphs come from
    :func:`~maskseg_d2.visualization.fonts.text_mask` (DejaVu Sans, then a CJK font if one is installed), not
    OpenCV's ASCII-only Hershey fonts.

    Args:
        img (np.ndarray): (H, W, 3) uint8 BGR, modified in place.
        text (str): the label.
        org (tuple[int, int]): (x, y) of the box's bottom-left corner.
        color (tuple[int, int, int]): BGR background colour.
        scale (float): font scale, as OpenCV's (0.5: about 14 px text).
        thickness (int): stroke width; 1 is regular, each step more adds one pixel of bold.
    """
    glyphs = text_mask(text, max(8, round(28 * scale)), max(0, thickness - 1))
    th, tw = glyphs.shape
    h, w = img.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 2, 0)))
    y = int(min(max(org[1], th + 2), h))
    cv2.rectangle(img, (x, y - th - 2), (x + tw + 2, y), color, cv2.FILLED)
    y0, x0 = max(y - th - 1, 0), x + 1
    region = img[y0: y - 1, x0: x0 + tw]
    alpha = glyphs[th - region.shape[0]:, : region.shape[1], None].astype(np.float32) / 255.0
    region[:] = (region * (1.0 - alpha) + 255.0 * alpha + 0.5).astype(np.uint8)


def draw_detections(
    bgr: np.ndarray, dets, class_names: Sequence[str], alpha: float = 0.45, show_boxes: bool = True,
    show_labels: bool = True, show_scores: bool = True, colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """Draw instances on a copy of an image: blended colour masks, outlines, boxes and labels.

    Lower-scored instances are drawn first so the most confident one stays on top.

    Args:
        bgr (np.ndarray): (H, W, 3) uint8 BGR image.
        dets (Detections): ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes`` (N,), ``masks`` (N, H, W) bool.
        class_names (list[str]): ``thing_classes``.
        alpha (float): mask opacity in [0, 1].
        show_boxes (bool): draw the boxes.
        show_labels (bool): write class names.
        show_scores (bool): append the score (in percent) to the label.
        colors (list[tuple] or None): BGR colour per class; None uses :func:`class_colors`.

    Returns:
        np.ndarray: (H, W, 3) uint8 BGR.
    """
    out = np.array(bgr, dtype=np.uint8, order="C")  # a contiguous copy: cv2 draws in place
    h, w = out.shape[:2]
    colors = list(colors) if colors is not None else class_colors(len(class_names))
    thick = max(1, round(max(h, w) / 500))
    scale = max(0.35, max(h, w) / 1400)
    order = np.argsort(np.asarray(dets.scores), kind="stable")  # ascending: best drawn last, on top
    for i in order:
        color = colors[int(dets.classes[i]) % len(colors)]
        x0, y0, x1, y1 = _crop_box(dets.boxes[i], h, w)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = dets.masks[i][y0:y1, x0:x1]
        region = out[y0:y1, x0:x1]
        if mask.any():
            tinted = cv2.addWeighted(region, 1.0 - alpha, np.full_like(region, color), alpha, 0.0)
            region[mask] = tinted[mask]
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(region, contours, -1, color, thick, cv2.LINE_AA)
        bx0, by0, bx1, by1 = (int(round(float(v))) for v in dets.boxes[i])
        if show_boxes:
            cv2.rectangle(out, (bx0, by0), (bx1 - 1, by1 - 1), color, thick, cv2.LINE_AA)
        if show_labels:
            name = str(class_names[int(dets.classes[i])]) if int(dets.classes[i]) < len(class_names) else "?"
            text = f"{name} {float(dets.scores[i]) * 100:.0f}%" if show_scores else name
            draw_text(out, text, (bx0, by0), color, scale, max(1, thick - 1))
    return out
