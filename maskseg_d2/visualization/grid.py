"""Pictures tiled into one: the grid pages of ``tools/visualize.py`` and the run's ``train_batch.jpg``."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .overlay import draw_text

__all__ = ["make_grid"]


def make_grid(images: Sequence[np.ndarray], cols: int = 4, cell: int = 384,
              titles: Sequence[str] | None = None, pad: int = 6) -> np.ndarray:
    """Tile images into one picture; each is scaled to fit a ``cell`` x ``cell`` square (aspect kept),
    each row as tall as its tallest image.

    Args:
        images (list[np.ndarray]): (H, W, 3) uint8 images, all in the same channel order.
        cols (int): images per row.
        cell (int): the side of a cell in pixels.
        titles (list[str] or None): a caption per image (any language), drawn in its top-left corner.
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
                draw_text(grid, str(titles[r * cols + c])[:60], (x, y + 18), (60, 60, 60), 0.45)
        y += rh + pad
    return grid
