"""Predictions as annotation files: COCO results, Label Studio pre-annotations, LabelMe JSON.

The per-image functions take :class:`~maskseg_d2.predict.detections.Detections` (full-size bool masks)
and return plain JSON-ready dicts; the writers in :mod:`maskseg_d2.predict.outputs` put them on disk.
They are built from encoders of one region (``labelstudio_*_value``, :func:`labelme_shape`,
:func:`labelme_mask`) that take a mask or points, a label and the image size, so the demo dataset
(:mod:`maskseg_d2.demo.dataset`) writes its annotations with the same code.
Geometry follows the project convention (``maskseg_d2.data.geometry``): continuous pixel coordinates,
pixel (i, j) covers ``[j, j+1) x [i, i+1)``, so our importers read every file back to the same masks:

* COCO results: ``{"image_id", "category_id", "segmentation" (COCO RLE), "bbox" (XYWH), "score"}``,
  ``category_id`` = index in ``thing_classes`` + 1 (COCO ids start at 1).
* Label Studio: a task ``{"data": {"image": url}, "predictions": [{"model_version", "score", "result"}]}``;
  results are ``polygonlabels`` (percent of the image size, one polygon per instance) or
  ``brushlabels`` (Label Studio's RLE, exact), each with its own ``score``; ``auto`` (the default) writes
  a polygon where the mask is one part without holes and a brush mask otherwise, which one polygon cannot hold.
* LabelMe: ``polygon`` shapes (a multi-part instance shares one ``group_id``) or ``mask`` shapes
  (a 0/1 PNG crop between two inclusive corner pixels), the score in ``description``.
"""
from __future__ import annotations

import base64
import zlib
from typing import Sequence

import cv2
import numpy as np

from ..data.coco_rle import mask_to_coco_rle
from ..data.labelstudio_rle import mask_to_brush_rle
from .detections import Detections

__all__ = [
    "LABELME_VERSION", "LS_SHAPES", "LABELME_SHAPES", "is_simple_mask", "mask_to_polygons", "coco_results",
    "labelstudio_polygon_value", "labelstudio_rectangle_value", "labelstudio_brush_value", "labelstudio_results",
    "labelstudio_task", "labelme_shape", "labelme_mask", "labelme_shapes", "labelme_document",
]

LABELME_VERSION = "5.5.0"  # mask shapes exist since LabelMe 5.4.0
LS_SHAPES = ("auto", "polygon", "brush")
LABELME_SHAPES = ("polygon", "mask")
_UPSAMPLE = 4  # contours of a 4x upsampled mask run within 1/8 px of the pixel edges


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.7, min_area: float = 0.0) -> list[np.ndarray]:
    """Outlines of a mask's connected parts (holes ignored), largest first, in pixel-corner coordinates.

    The mask's bounding crop is upsampled before ``cv2.findContours`` so the outline follows the pixel
    edges (a contour through the boundary pixels' centres would lose half a pixel all around), then
    simplified with ``cv2.approxPolyDP``.

    Args:
        mask (np.ndarray): (H, W) bool.
        tolerance (float): simplification tolerance in pixels (0 keeps every vertex).
        min_area (float): parts other than the largest that are smaller than this (pixels²) are
            dropped as noise (0: keep every part; LabelMe groups them into one instance).

    Returns:
        list[np.ndarray]: (K, 2) float64 vertices (x, y), K >= 3; at least one for a non-empty mask.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    crop = np.pad(mask[y0: ys.max() + 1, x0: xs.max() + 1], 1).astype(np.uint8)
    big = cv2.resize(crop, None, fx=_UPSAMPLE, fy=_UPSAMPLE, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for i, c in enumerate(sorted(contours, key=cv2.contourArea, reverse=True)):
        if i > 0 and cv2.contourArea(c) / _UPSAMPLE ** 2 < min_area:  # the largest part always stays
            continue
        pts = cv2.approxPolyDP(c, tolerance * _UPSAMPLE, True) if tolerance > 0 else c
        if len(pts) < 3:
            pts = c
        polygons.append((pts[:, 0, :].astype(np.float64) + 0.5) / _UPSAMPLE + (x0 - 1.0, y0 - 1.0))
    return [p for p in polygons if len(p) >= 3]


def is_simple_mask(mask: np.ndarray) -> bool:
    """True when a mask is one 8-connected part without holes: what one polygon outlines exactly.

    Holes are 4-connected background regions not touching the border (the dual of 8-connected parts). Both
    are counted in the mask's bounding box (as :func:`mask_to_polygons` does), not the whole image: the same
    answer, since background at the box's edge always reaches the outside.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return False
    fg = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1].astype(np.uint8)
    if cv2.connectedComponents(fg, connectivity=8)[0] != 2:  # background + one part
        return False
    background = np.pad(1 - fg, 1, constant_values=1)  # the padded frame joins every outside region
    return cv2.connectedComponents(background, connectivity=4)[0] == 2


def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def coco_results(dets: Detections, image_id: int) -> list[dict]:
    """COCO results records (the format ``COCO.loadRes`` and Detectron2's evaluator use) for one image.

    Args:
        dets (Detections): the image's instances.
        image_id (int): the COCO image id.

    Returns:
        list[dict]: one record per instance; ``category_id`` = class index + 1.
    """
    return [{"image_id": int(image_id), "category_id": int(c) + 1, "bbox": _xywh(b),
             "score": round(float(s), 5), "segmentation": mask_to_coco_rle(m)}
            for b, s, c, m in zip(dets.boxes, dets.scores, dets.classes, dets.masks)]


def _result_id(seed: str, k: int) -> str:
    return f"{zlib.crc32(seed.encode()):08x}"[:6] + f"{k:04d}"  # stable: same image -> same ids


def labelstudio_polygon_value(points: np.ndarray, label: str, width: int, height: int,
                              decimals: int | None = None) -> dict:
    """A ``polygonlabels`` value: the vertices in percent of the image size.

    Args:
        points (np.ndarray): (K, 2) vertices (x, y) in pixels (pixel-corner coordinates).
        label (str): the class name.
        width (int): image width.
        height (int): image height.
        decimals (int | None): round the percentages to this many decimals (None: unrounded).

    Returns:
        dict: ``{"points", "closed", "polygonlabels"}``.
    """
    pts = [[x * 100.0 / width, y * 100.0 / height] for x, y in points]
    if decimals is not None:
        pts = [[round(x, decimals), round(y, decimals)] for x, y in pts]
    return {"points": pts, "closed": True, "polygonlabels": [label]}


def labelstudio_rectangle_value(rect: Sequence[float], label: str, width: int, height: int) -> dict:
    """A ``rectanglelabels`` value in percent of the image size.

    Args:
        rect (Sequence[float]): ``(x, y, w, h, angle_deg)`` in pixels; (x, y) is the top-left corner
            before rotation, and Label Studio turns the box clockwise (image y down) about it.
        label (str): the class name.
        width (int): image width.
        height (int): image height.

    Returns:
        dict: ``{"x", "y", "width", "height", "rotation", "rectanglelabels"}``.
    """
    x, y, w, h, angle = rect
    return {"x": x * 100.0 / width, "y": y * 100.0 / height, "width": w * 100.0 / width,
            "height": h * 100.0 / height, "rotation": angle % 360.0, "rectanglelabels": [label]}


def labelstudio_brush_value(mask: np.ndarray, label: str) -> dict:
    """A ``brushlabels`` value: the (H, W) bool mask in Label Studio's brush RLE (exact)."""
    return {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [label]}


def labelstudio_results(
    dets: Detections, class_names: Sequence[str], shape: str = "auto", from_name: str = "label",
    to_name: str = "image", tolerance: float = 0.7, id_seed: str = "", brush_from_name: str | None = None,
) -> list[dict]:
    """Label Studio result regions of one image.

    Args:
        dets (Detections): the image's instances.
        class_names (list[str]): ``thing_classes``; must match the ``<Label value=...>`` of the project.
        shape (str): ``"auto"`` (a polygon where :func:`is_simple_mask`, else a brush mask: a polygon of a
            multi-part or holed mask would keep only its largest outline), ``"polygon"`` (``polygonlabels``:
            editable outlines; the largest part only) or ``"brush"`` (``brushlabels``: the exact mask).
        from_name (str): the ``name`` of the labels tag in the labeling config (the polygon tag under auto).
        to_name (str): the ``name`` of the ``<Image>`` tag.
        tolerance (float): polygon simplification in pixels.
        id_seed (str): makes region ids stable per image (e.g. the file name).
        brush_from_name (str | None): the ``<BrushLabels>`` tag's name for brush regions; None: ``from_name``.

    Returns:
        list[dict]: result dicts; an instance whose mask has no polygon (too small) is left out.
    """
    if shape not in LS_SHAPES:
        raise ValueError(f"shape={shape!r}: use one of {LS_SHAPES}")
    h, w = dets.image_size
    results = []
    for k, (score, cls, mask) in enumerate(zip(dets.scores, dets.classes, dets.masks)):
        label = str(class_names[cls])
        tag = from_name
        if shape == "brush" or shape == "auto" and not is_simple_mask(mask):
            rtype, value = "brushlabels", labelstudio_brush_value(mask, label)
            tag = brush_from_name or from_name
        else:
            polygons = mask_to_polygons(mask, tolerance)
            if not polygons:
                continue
            rtype, value = "polygonlabels", labelstudio_polygon_value(polygons[0], label, w, h, decimals=4)
        results.append({"id": _result_id(id_seed, k), "type": rtype, "from_name": tag,
                        "to_name": to_name, "original_width": w, "original_height": h, "image_rotation": 0,
                        "value": value, "score": round(float(score), 5)})
    return results


def labelstudio_task(image_url: str, results: list[dict], scores: np.ndarray, model_version: str,
                     data_key: str = "image") -> dict:
    """One Label Studio task carrying a prediction (what "Import" reads as a pre-annotation).

    Args:
        image_url (str): the image as Label Studio can open it (``/data/local-files/?d=...``,
            ``/data/upload/...``, an http(s)/s3 URL).
        results (list[dict]): from :func:`labelstudio_results`.
        scores (np.ndarray): the instance scores; the prediction's score is their mean (0 when none),
            which Label Studio uses to sort tasks.
        model_version (str): shown in Label Studio; e.g. the run directory's name.
        data_key (str): the ``$variable`` of the ``<Image>`` tag.

    Returns:
        dict: the task.
    """
    score = round(float(np.mean(scores)), 5) if len(scores) else 0.0
    return {"data": {data_key: image_url},
            "predictions": [{"model_version": model_version, "score": score, "result": results}]}


def labelme_shape(label: str, points: list, shape_type: str, group_id: int | None = None, description: str = "",
                  mask: str | None = None) -> dict:
    """One LabelMe shape.

    Args:
        label (str): the class name.
        points (list): ``[[x, y], ...]`` in pixels, written as given.
        shape_type (str): ``"polygon"``, ``"rectangle"`` (two corners), ``"circle"`` (centre and a point
            on the circle) or ``"mask"`` (see :func:`labelme_mask`).
        group_id (int | None): shapes with the same label and group id are one instance.
        description (str): free text (our predictions put the score there).
        mask (str | None): a ``"mask"`` shape's base64 PNG.

    Returns:
        dict: the shape, keys in LabelMe's order.
    """
    return {"label": label, "points": points, "group_id": group_id, "description": description,
            "shape_type": shape_type, "flags": {}, "mask": mask}


def labelme_mask(mask: np.ndarray) -> tuple[list[list[int]], str] | None:
    """LabelMe's encoding of a ``"mask"`` shape: the mask's bounding crop as a 0/1 PNG.

    Args:
        mask (np.ndarray): (H, W) bool.

    Returns:
        tuple | None: the shape's two points (first and last pixel of the crop, inclusive, as
        ``[[x0, y0], [x1, y1]]`` ints) and the crop as base64 PNG; None for an empty mask.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    ok, png = cv2.imencode(".png", mask[y0: y1 + 1, x0: x1 + 1].astype(np.uint8))  # 0/1, like LabelMe's own
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a PNG mask")
    return [[x0, y0], [x1, y1]], base64.b64encode(png.tobytes()).decode("ascii")


def labelme_shapes(dets: Detections, class_names: Sequence[str], shape: str = "polygon",
                   tolerance: float = 0.7) -> list[dict]:
    """LabelMe shapes of one image.

    Args:
        dets (Detections): the image's instances.
        class_names (list[str]): ``thing_classes``.
        shape (str): ``"polygon"`` (one shape per part; parts of one instance share a ``group_id``) or
            ``"mask"`` (LabelMe's AI-mask shape: exact, one per instance).
        tolerance (float): polygon simplification in pixels.

    Returns:
        list[dict]: shapes; an instance too small for a polygon is left out.
    """
    if shape not in LABELME_SHAPES:
        raise ValueError(f"shape={shape!r}: use one of {LABELME_SHAPES}")
    shapes, next_group = [], 1
    for score, cls, mask in zip(dets.scores, dets.classes, dets.masks):
        label, note = str(class_names[cls]), f"score={float(score):.3f}"
        if shape == "mask":
            encoded = labelme_mask(mask)
            if encoded is not None:
                corners, png = encoded
                shapes.append(labelme_shape(label, corners, "mask", description=note, mask=png))
            continue
        polygons = mask_to_polygons(mask, tolerance)
        group = None
        if len(polygons) > 1:  # LabelMe (and our importer) join shapes with the same label + group_id
            group, next_group = next_group, next_group + 1
        for p in polygons:
            pts = [[round(float(x), 2), round(float(y), 2)] for x, y in p]
            shapes.append(labelme_shape(label, pts, "polygon", group, description=note))
    return shapes


def labelme_document(shapes: list[dict], image_path: str, height: int, width: int) -> dict:
    """A LabelMe file (``imageData`` null: LabelMe opens ``imagePath``, relative to the JSON file).

    Args:
        shapes (list[dict]): from :func:`labelme_shapes`.
        image_path (str): the image, relative to where the JSON is written (``/`` separators).
        height (int): image height (EXIF orientation applied, as LabelMe shows it).
        width (int): image width.

    Returns:
        dict: the document.
    """
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}
