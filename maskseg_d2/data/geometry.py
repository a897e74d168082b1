"""Geometry -> Detectron2 annotations: polygon checks, boxes, and annotations from polygons, masks or RLE.

Coordinate convention (all importers): points are *continuous* pixel coordinates, x right and y down, the
image spanning ``[0, width] x [0, height]``; pixel (row i, column j) covers ``[j, j+1) x [i, i+1)``, so its
centre is at ``(j + 0.5, i + 0.5)``. This is the convention of COCO and Detectron2 (pycocotools rasterises
polygons this way), of Label Studio (percent of the image size) and of the LabelMe canvas, so no coordinate
is shifted. Boxes are ``XYWH_ABS`` in the same space; a mask's box is the extent of its pixels. An
annotation gets a final ``category_id`` or a pending class name (:data:`~.loading.PENDING_NAME`) that
:meth:`~.loading.ClassMapper.assign` resolves; a shape that cannot become an instance raises
:class:`GeometryError`, which the load counts by its ``kind``.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from ..errors import UserError, fail
from .coco_rle import mask_to_coco_rle
from .loading import PENDING_NAME

__all__ = [
    "OUTSIDE_SLACK",
    "GeometryError",
    "mask_annotation",
    "numbers_only",
    "polygon_area",
    "polygons_annotation",
    "rasterize_polygons",
    "rle_annotation",
    "validate_polygon",
]

# A vertex farther outside the image than this fraction of its width/height is not a click beside the
# border but a wrong unit or a wrong image (and huge values overflow pycocotools' rasteriser).
OUTSIDE_SLACK = 0.5
_JSON_NUMBERS = {int, float}


class GeometryError(UserError):
    """A region whose geometry cannot become an instance (degenerate polygon, NaN, outside the image ...).

    Attributes:
        kind (str): the problem class used by the validation report, e.g. ``"fewer than 3 points"``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _geometry_error(where: str, what: str, fix: str, kind: str) -> GeometryError:
    return GeometryError(str(fail(where, what, fix)), kind)


def polygon_area(points: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Area of a simple polygon (shoelace formula, absolute value).

    Args:
        points (array-like): (N, 2) vertices x, y.

    Returns:
        float: the area in pixels².
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def validate_polygon(points: Any, where: str) -> np.ndarray:
    """Check a polygon: >= 3 points of 2 finite numbers each, area > 0.

    Args:
        points (array-like): (N, 2) vertices in pixels.
        where (str): the item, for the error (``"<file>: task 3 result ab shape 0"``).

    Returns:
        np.ndarray: (N, 2) float64 vertices.

    Raises:
        GeometryError: with ``kind`` "invalid points", "NaN coordinate", "fewer than 3 points" or
            "zero area".
    """
    try:
        if not isinstance(points, np.ndarray) and not numbers_only(points):
            raise TypeError  # True/"12" would become 1.0/12.0 in np.asarray: a silently moved vertex
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise _geometry_error(where, f"points are not a list of [x, y] numbers: {str(points)[:60]}",
                              "fix or delete this shape", "invalid points") from None
    if p.ndim != 2 or p.shape[1] != 2:
        raise _geometry_error(where, f"points are not a list of [x, y] pairs (shape {p.shape})",
                              "fix or delete this shape", "invalid points")
    if not np.isfinite(p).all():
        raise _geometry_error(where, "a coordinate is NaN or infinite",
                              "fix or delete this shape in the annotation tool", "NaN coordinate")
    if len(p) < 3:
        raise _geometry_error(where, f"polygon has {len(p)} point(s), needs at least 3",
                              "redraw or delete this shape", "fewer than 3 points")
    if polygon_area(p) <= 0:
        raise _geometry_error(where, "polygon has zero area (all points on one line)",
                              "redraw or delete this shape", "zero area")
    return p


def numbers_only(points: Any) -> bool:
    """bool: True when ``points`` is a list of lists of JSON numbers (int or float; bool and str are not).

    Args:
        points: the parsed ``points`` value (shape not checked here).
    """
    try:
        types = set(map(type, itertools.chain.from_iterable(points)))  # C speed: polygons can be long
    except TypeError:  # not a list of lists
        return False
    return types <= _JSON_NUMBERS or all(issubclass(t, (int, float, np.number)) and not issubclass(t, bool)
                                         for t in types)  # numpy scalars from internal callers


def _check_extent(lo: np.ndarray, hi: np.ndarray, size: tuple[int, int], where: str) -> None:
    h, w = size
    slack = np.array([OUTSIDE_SLACK * w, OUTSIDE_SLACK * h])
    if (lo < -slack).any() or (hi > np.array([w, h]) + slack).any():
        far = np.where(lo < -slack, lo, hi)
        raise _geometry_error(
            where, f"the shape reaches ({far[0]:.6g}, {far[1]:.6g}), far outside the {w}x{h} image",
            "fix the coordinates (pixels of this image?) or delete this shape", "outside the image")


def _clip_box(x0: float, y0: float, x1: float, y1: float, size: tuple[int, int] | None) -> list[float]:
    if size is not None:
        h, w = size
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _set_category(ann: dict, category: str | int | None) -> dict:
    if isinstance(category, int) and not isinstance(category, bool):
        ann["category_id"] = category
    elif category is not None:
        ann[PENDING_NAME] = category
    return ann


def polygons_annotation(
    polygons: Sequence[np.ndarray], category: str | int | None = None,
    image_size: tuple[int, int] | None = None, where: str = "",
) -> dict:
    """One Detectron2 annotation from one or more polygons (their union is the instance).

    Args:
        polygons (list[np.ndarray]): validated (N, 2) pixel vertices (see :func:`validate_polygon`).
        category (str, int or None): a class name (resolved to ``category_id`` later by
            :meth:`ClassMapper.assign`) or a final ``category_id``.
        image_size (tuple[int, int] or None): (height, width); the box is clipped to it, and a vertex
            farther outside than :data:`OUTSIDE_SLACK` of the size is an error.
        where (str): the item, for the error when the shape lies outside the image.

    Returns:
        dict: ``segmentation`` (list of flat [x1, y1, ...] lists), ``bbox`` (XYWH_ABS), ``bbox_mode``,
        ``iscrowd`` 0, and ``category_id`` or the pending class name.
    """
    allp = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    if image_size is not None:
        _check_extent(allp.min(axis=0), allp.max(axis=0), image_size, where)
    bbox = _clip_box(*allp.min(axis=0), *allp.max(axis=0), image_size)
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise _geometry_error(where, "the shape lies outside the image", "move or delete this shape",
                              "outside the image")
    ann = {
        "segmentation": [[float(v) for v in np.asarray(p, dtype=np.float64).ravel()] for p in polygons],
        "bbox": bbox,
        "bbox_mode": BoxMode.XYWH_ABS,
        "iscrowd": 0,
    }
    return _set_category(ann, category)



def mask_annotation(mask: np.ndarray, category: str | int | None = None) -> dict | None:
    """One Detectron2 annotation from a bool mask (segmentation = COCO RLE).

    Args:
        mask (np.ndarray): (H, W) bool mask of the instance, image-sized.
        category (str, int or None): a class name (resolved to ``category_id`` later by
            :meth:`ClassMapper.assign`) or a final ``category_id``.

    Returns:
        dict or None: the annotation (box = extent of the mask's pixels), None when the mask is empty.
    """
    return rle_annotation(mask_to_coco_rle(mask), category)


def rle_annotation(rle: dict, category: str | int | None = None, iscrowd: int = 0) -> dict | None:
    """One Detectron2 annotation from a COCO RLE, without decoding it (box from ``toBbox``).

    Args:
        rle (dict): ``{"size": [H, W], "counts": str or bytes}`` (compressed COCO RLE).
        category (str, int or None): a class name or a final ``category_id``.
        iscrowd (int): COCO's crowd flag, kept as is.

    Returns:
        dict or None: the annotation (``counts`` as str), None when the mask is empty.
    """
    counts = rle["counts"]
    rle = {"size": [int(v) for v in rle["size"]],
           "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    if float(mask_util.area(rle)) <= 0:
        return None
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    ann = {"segmentation": rle, "bbox": bbox, "bbox_mode": BoxMode.XYWH_ABS, "iscrowd": int(bool(iscrowd))}
    return _set_category(ann, category)


def rasterize_polygons(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Union of polygons as a (H, W) bool mask, rasterised like COCO/Detectron2 (pycocotools).

    Args:
        polygons (list[np.ndarray]): (N, 2) pixel vertices each.
        height (int): image height.
        width (int): image width.

    Returns:
        np.ndarray: (H, W) bool.
    """
    flat = [np.asarray(p, dtype=np.float64).ravel().tolist() for p in polygons]
    rles = mask_util.frPyObjects(flat, height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)

