"""Per-image outputs of ``tools/predict.py`` (``save=[...]``) and the run-level JSON files.

Layout under the output folder (``<stem>`` = the image path relative to the input folder, without
extension)::

    overlay/<stem>.jpg                        masks, outlines, boxes, class + score (OpenCV)
    masks/<stem>/<k>_<class>_<score>.png      one binary mask per instance (0/255), k = rank by score
    cutout/<stem>/<k>_<class>_<score>.png     the object on a transparent background, cropped to its mask
    coco_results.json                         COCO results (RLE); ids explained in coco_images.json
    coco_images.json                          {"images": [{id, file_name, height, width}], "categories"}
    labelstudio_predictions.json              Label Studio tasks with predictions (pre-annotations)
    labelme/<stem>.json                       LabelMe files (imagePath points back at the photo)
    summary.json                              counts, images/s, skipped files

COCO ``image_id`` = position of the image in the sorted input list + 1 (skipped files keep their
number); ``category_id`` = index in the run's classes + 1.
"""
from __future__ import annotations

import os
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import UserError
from ..utils.fileio import atomic_write_json
from ..visualization.overlay import draw_detections
from .detections import Detections
from .annotations import (
    LABELME_SHAPES,
    LS_SHAPES,
    coco_results,
    labelme_document,
    labelme_shapes,
    labelstudio_results,
    labelstudio_task,
)

__all__ = ["SAVE_KINDS", "ExportOptions", "ImageItem", "OutputWriter", "imwrite", "class_slug"]

SAVE_KINDS = ("overlay", "masks", "cutout", "coco", "labelstudio", "labelme")
COCO_RESULTS = "coco_results.json"
COCO_IMAGES = "coco_images.json"
LS_FILE = "labelstudio_predictions.json"


@dataclass
class ExportOptions:
    """How the outputs look (``configs/predict.yaml`` mirrors these).

    Attributes:
        overlay_format (str): ``jpg`` (small, fast) or ``png``.
        jpeg_quality (int): 1..100.
        alpha (float): mask opacity in overlays.
        show_boxes (bool): draw boxes in overlays.
        show_labels (bool): write class + score in overlays.
        polygon_tolerance (float): polygon simplification in pixels (Label Studio / LabelMe).
        ls_shape (str): ``auto`` (polygon for a one-part mask without holes, else brush), ``polygon`` or ``brush``.
        ls_from_name (str): name of the labels tag in the Label Studio labeling config.
        ls_brush_from_name (str or None): name of the ``<BrushLabels>`` tag for brush regions; None: ls_from_name.
        ls_to_name (str): name of the ``<Image>`` tag.
        ls_data_key (str): the ``$variable`` of the ``<Image>`` tag.
        ls_image_prefix (str): prepended to the image path (URL-quoted) in ``data.image``.
        ls_image_root (str or None): ``data.image`` paths are relative to it; None = the input
            folder's parent (matches Label Studio local storage with that folder as document root).
        ls_model_version (str or None): None = the run directory's name.
        labelme_shape (str): ``polygon`` or ``mask``.
        labelme_next_to_images (bool): write ``<photo>.json`` beside each photo (never overwriting an
            existing file) instead of ``<output>/labelme/``.
    """

    overlay_format: str = "jpg"
    jpeg_quality: int = 92
    alpha: float = 0.45
    show_boxes: bool = True
    show_labels: bool = True
    polygon_tolerance: float = 0.7
    ls_shape: str = "auto"
    ls_from_name: str = "label"
    ls_brush_from_name: str | None = None
    ls_to_name: str = "image"
    ls_data_key: str = "image"
    ls_image_prefix: str = "/data/local-files/?d="
    ls_image_root: str | None = None
    ls_model_version: str | None = None
    labelme_shape: str = "polygon"
    labelme_next_to_images: bool = False

    def check(self) -> None:
        """Raise a :class:`UserError` naming the first invalid option."""
        if self.overlay_format not in ("jpg", "png"):
            raise UserError(f"overlay.format={self.overlay_format}: use jpg or png")
        if self.ls_shape not in LS_SHAPES:
            raise UserError(f"labelstudio.shape={self.ls_shape}: use one of {', '.join(LS_SHAPES)}")
        if self.labelme_shape not in LABELME_SHAPES:
            raise UserError(f"labelme.shape={self.labelme_shape}: use one of {', '.join(LABELME_SHAPES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"overlay.alpha={self.alpha}: must be in [0, 1]")


@dataclass(frozen=True)
class ImageItem:
    """One input image: ``index`` in the sorted input list, its ``path`` and output ``stem``."""

    index: int
    path: str
    stem: str


def class_slug(name: str) -> str:
    """str: a class name usable in file names (``sign board`` -> ``sign-board``)."""
    return re.sub(r"[^0-9A-Za-z_.]+", "-", name).strip("-") or "class"


def imwrite(path: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """Encode with OpenCV and write the bytes (``cv2.imwrite`` fails on non-ASCII paths on Windows).

    Args:
        path (str): the file; its extension picks the format. Folders are created.
        image (np.ndarray): BGR, BGRA or grayscale uint8.
        params (list[int]): ``cv2.imencode`` parameters.
    """
    ok, buf = cv2.imencode(os.path.splitext(path)[1], image, list(params))
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def _write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, obj, ensure_ascii=False)  # never a half-written JSON when interrupted


def _posix_rel(path: str, start: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(start)).replace(os.sep, "/")


@dataclass
class _Collected:
    files: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    coco: dict[int, list[dict]] = field(default_factory=dict)
    images: dict[int, dict] = field(default_factory=dict)
    tasks: dict[int, dict] = field(default_factory=dict)
    kept_labelme: list[str] = field(default_factory=list)  # existing LabelMe files left untouched


class OutputWriter:
    """Writes the selected outputs of each image; thread-safe, so several images are written at once.

    Args:
        output (str): the output folder.
        save (list[str]): subset of :data:`SAVE_KINDS`.
        class_names (list[str]): the run's ``thing_classes``.
        options (ExportOptions): formats and Label Studio / LabelMe settings.
        input_root (str): the input folder (Label Studio paths default to its parent).
        model_version (str): default Label Studio ``model_version``.
    """

    def __init__(self, output: str, save: Sequence[str], class_names: Sequence[str], options: ExportOptions,
                 input_root: str, model_version: str) -> None:
        unknown = [s for s in save if s not in SAVE_KINDS]
        if unknown:
            raise UserError(f"save={list(save)}: unknown output {unknown[0]!r} — "
                            f"choose from {', '.join(SAVE_KINDS)}")
        options.check()
        self.output, self.save, self.options = output, tuple(save), options
        self.class_names = list(class_names)
        self.slugs = [class_slug(c) for c in self.class_names]
        self.ls_root = options.ls_image_root or os.path.dirname(os.path.abspath(input_root))
        self.model_version = options.ls_model_version or model_version
        self._lock = threading.Lock()
        self._c = _Collected()
        os.makedirs(output, exist_ok=True)

    # ------------------------------------------------------------------------------------ per image
    def write(self, item: ImageItem, bgr: np.ndarray, dets: Detections) -> None:
        """Write every selected output of one image.

        Args:
            item (ImageItem): the image.
            bgr (np.ndarray): the image as predicted on (EXIF applied), (H, W, 3) uint8.
            dets (Detections): its instances.
        """
        h, w = bgr.shape[:2]
        files: dict[str, list[str]] = {}
        if "overlay" in self.save:
            files["overlay"] = [self._overlay(item, bgr, dets)]
        if "masks" in self.save:
            files["masks"] = self._masks(item, dets)
        if "cutout" in self.save:
            files["cutout"] = self._cutouts(item, bgr, dets)
        if "labelme" in self.save:
            files["labelme"] = self._labelme(item, dets, h, w)
        task = self._ls_task(item, dets) if "labelstudio" in self.save else None
        coco = coco_results(dets, item.index + 1) if "coco" in self.save else None
        with self._lock:
            for kind, paths in files.items():
                self._c.files.setdefault(kind, {})[item.index] = paths
            self._c.images[item.index] = {"id": item.index + 1, "file_name": item.path, "height": h,
                                          "width": w}
            if coco is not None:
                self._c.coco[item.index] = coco
            if task is not None:
                self._c.tasks[item.index] = task

    def _name(self, item: ImageItem, k: int, dets: Detections) -> str:
        # the score as the JSON outputs round it (5 decimals): float32 0.98149997 would read 0.981 here, 0.982 there
        return f"{k:02d}_{self.slugs[int(dets.classes[k])]}_{round(float(dets.scores[k]), 5):.3f}.png"

    def _overlay(self, item: ImageItem, bgr: np.ndarray, dets: Detections) -> str:
        o = self.options
        vis = draw_detections(bgr, dets, self.class_names, o.alpha, o.show_boxes, o.show_labels)
        path = os.path.join(self.output, "overlay", f"{item.stem}.{o.overlay_format}")
        params = [cv2.IMWRITE_JPEG_QUALITY, int(o.jpeg_quality)] if o.overlay_format == "jpg" else \
            [cv2.IMWRITE_PNG_COMPRESSION, 1]  # level 1: 3-5x faster than the default, files ~10% larger
        imwrite(path, vis, params)
        return path

    def _masks(self, item: ImageItem, dets: Detections) -> list[str]:
        paths = []
        for k in range(len(dets)):
            path = os.path.join(self.output, "masks", item.stem, self._name(item, k, dets))
            imwrite(path, dets.masks[k].astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            paths.append(path)
        return paths

    def _cutouts(self, item: ImageItem, bgr: np.ndarray, dets: Detections) -> list[str]:
        paths = []
        for k in range(len(dets)):
            m = dets.masks[k]
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            if not len(rows):
                continue
            ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            bgra = np.dstack([bgr[ys, xs], m[ys, xs].astype(np.uint8) * 255])
            path = os.path.join(self.output, "cutout", item.stem, self._name(item, k, dets))
            imwrite(path, bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            paths.append(path)
        return paths

    def _ls_task(self, item: ImageItem, dets: Detections) -> dict:
        o = self.options
        url = o.ls_image_prefix + urllib.parse.quote(_posix_rel(item.path, self.ls_root), safe="/")
        results = labelstudio_results(dets, self.class_names, o.ls_shape, o.ls_from_name, o.ls_to_name,
                                      o.polygon_tolerance, id_seed=item.stem, brush_from_name=o.ls_brush_from_name)
        return labelstudio_task(url, results, dets.scores, self.model_version, o.ls_data_key)

    def _labelme(self, item: ImageItem, dets: Detections, h: int, w: int) -> list[str]:
        o = self.options
        if o.labelme_next_to_images:
            path = os.path.splitext(item.path)[0] + ".json"
            if os.path.exists(path):  # the user's own annotations: never overwritten
                with self._lock:
                    self._c.kept_labelme.append(path)
                return []
        else:
            path = os.path.join(self.output, "labelme", f"{item.stem}.json")
        shapes = labelme_shapes(dets, self.class_names, o.labelme_shape, o.polygon_tolerance)
        doc = labelme_document(shapes, _posix_rel(item.path, os.path.dirname(path)), h, w)
        _write_json(path, doc)
        return [path]

    # ------------------------------------------------------------------------------------- run level
    def close(self) -> dict[str, Any]:
        """Write the run-level JSON files.

        Returns:
            dict: per output kind, the written paths (a list for per-image kinds, the file for
            ``coco`` / ``labelstudio``), in input order; ``labelme_kept`` lists existing LabelMe
            files that were left untouched.
        """
        c = self._c
        out: dict[str, Any] = {k: [p for i in sorted(v) for p in v[i]] for k, v in c.files.items()}
        if "coco" in self.save:
            path = os.path.join(self.output, COCO_RESULTS)
            _write_json(path, [r for i in sorted(c.coco) for r in c.coco[i]])
            cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
            images = [c.images[i] for i in sorted(c.images)]
            _write_json(os.path.join(self.output, COCO_IMAGES),
                        {"images": images, "annotations": [], "categories": cats})
            out["coco"] = path
        if "labelstudio" in self.save:
            path = os.path.join(self.output, LS_FILE)
            _write_json(path, [c.tasks[i] for i in sorted(c.tasks)])
            out["labelstudio"] = path
        if c.kept_labelme:
            out["labelme_kept"] = sorted(c.kept_labelme)
        return out
