"""LabelMe JSON files (one per image) -> Detectron2 dataset dicts (the ``labelme`` parser of
:func:`~maskseg_d2.data.formats.load_dataset`).

The format is read directly (labelme itself is a GPL application, not a library; see FORMATS.md §3).
Input: a folder (searched recursively for ``*.json``, sorted; hidden folders skipped), one file, or a
list of files; one dict per file, ``image_id`` = the JSON path.

Instances: shapes sharing a non-null ``group_id`` *and* label form one instance (their union); with
``group_id`` null every shape is its own instance. Polygons, rectangles (2 corners, any order), circles
(centre + rim point -> polygon with chord error <= 0.1 px) and oriented rectangles become polygon
segmentations; mask shapes (a PNG crop pasted at the box's top-left corner) and groups containing one
become COCO RLE. line, linestrip, point and points shapes have no area and are skipped and counted.
``imageHeight``/``imageWidth`` are reconciled with the image
(:func:`~maskseg_d2.data.images.reconcile_size`: transposed = EXIF, same aspect = rescaled).

Images: ``imagePath`` is relative to the JSON file (Windows backslashes accepted). When that file is
missing but the JSON embeds the image (``imageData``, base64), it is decoded once to
``<json folder>/.maskseg_images/<json stem>.<ext>`` and used from there (rewritten only when it changed).
"""
from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError, fail
from ..utils.fileio import atomic_write
from .geometry import (
    OUTSIDE_SLACK,
    mask_annotation,
    numbers_only,
    polygons_annotation,
    rasterize_polygons,
    validate_polygon,
)
from .images import SizeFix, check_utf8_name, reconcile_size
from .jsonio import read_json
from .loading import ClassMapper, LoadContext, LoadStats, progress

__all__ = ["labelme_dicts", "labelme_files", "circle_polygon", "CACHE_DIR"]

CACHE_DIR = ".maskseg_images"  # next to the JSON files; holds images decoded from imageData
_AREA_TYPES = ("polygon", "rectangle", "circle", "oriented_rectangle", "mask")
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}


# ----------------------------------------------------------------------------------------- files


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def labelme_files(json_dir_or_files: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The LabelMe JSON files to read.

    Args:
        json_dir_or_files (str, PathLike or iterable of them): a folder (searched recursively for
            ``*.json``, sorted; hidden folders skipped), one file, or a list of files.

    Returns:
        list[Path]: the files.
    """
    if isinstance(json_dir_or_files, (str, os.PathLike)):
        p = Path(json_dir_or_files)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.json") if not _hidden(f.relative_to(p)))
            if not files:
                raise fail(str(p), "no LabelMe *.json files in this folder",
                           "save the LabelMe annotations there")
            return files
        if not p.is_file():
            raise fail(str(p), "LabelMe folder or file not found", "check the path (dataset.annotations)")
        return [p]
    return [Path(f) for f in json_dir_or_files]


def _image_path_candidates(json_file: Path, image_path: str) -> list[Path]:
    """Where ``imagePath`` may point: relative to the JSON (Windows separators normalised).

    An absolute path (Windows or POSIX) is looked up by its name next to the JSON only: LabelMe writes
    relative paths, and an annotation file must not make us open files anywhere on the machine.
    """
    if "\\" in image_path:
        win = PureWindowsPath(image_path)
        if win.drive or win.root:
            return [json_file.parent / win.name]
        return [json_file.parent.joinpath(*win.parts)]
    p = Path(image_path)
    return [json_file.parent / p.name] if p.is_absolute() else [json_file.parent / p]


def _decode_image_data(json_file: Path, image_data: str, where: str) -> Path:
    try:
        raw = base64.b64decode(image_data, validate=False)
        with Image.open(io.BytesIO(raw)) as im:
            fmt = im.format or "PNG"
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise fail(where, f"imageData is not a base64 image: {e}", "save the file again in LabelMe") from None
    out = json_file.parent / CACHE_DIR / (json_file.stem + _FORMAT_EXT.get(fmt, ".png"))
    if not out.is_file() or hashlib.sha1(out.read_bytes()).digest() != hashlib.sha1(raw).digest():
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: f.write(raw))  # DDP workers load at once: never half a file
    return out


def _resolve_image(json_file: Path, doc: dict, where: str) -> str:
    image_path = doc.get("imagePath")
    has_path = isinstance(image_path, str) and bool(image_path)
    candidates = _image_path_candidates(json_file, image_path) if has_path else []
    for c in candidates:
        if c.is_file():
            return check_utf8_name(os.path.abspath(c), where)
    if isinstance(doc.get("imageData"), str) and doc["imageData"]:
        return check_utf8_name(os.path.abspath(_decode_image_data(json_file, doc["imageData"], where)), where)
    if not candidates:
        raise fail(where, "no imagePath and no imageData",
                   "open the image in LabelMe and save the file again")
    wanted = candidates[0]
    folder = wanted.parent
    siblings = sorted(f.name for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
    close = difflib.get_close_matches(wanted.name, siblings, n=3, cutoff=0.5)
    hint = f" (closest: {', '.join(close)})" if close else ""
    raise fail(where, f"image {image_path!r} not found at {wanted}{hint}",
               "put the photo next to the JSON file as imagePath says, or fix imagePath")


# -------------------------------------------------------------------------------------- geometry


def circle_polygon(center: tuple[float, float], radius: float, max_error: float = 0.1) -> np.ndarray:
    """Inscribed regular polygon of a circle whose chord error (sagitta) is below ``max_error``.

    Args:
        center (tuple[float, float]): (x, y) in pixels.
        radius (float): radius in pixels.
        max_error (float): largest distance between the circle and a chord, in pixels (the default
            0.1 px loses < 1% of the area of a 20 px circle; vertices stay on the circle).

    Returns:
        np.ndarray: (N, 2) vertices, N >= 8.
    """
    n = 8
    if radius > max_error / 2:
        # sagitta r * (1 - cos(pi / n)) < max_error  <=>  n > pi / acos(1 - max_error / r)
        n = max(n, math.floor(math.pi / math.acos(max(-1.0, 1 - max_error / radius))) + 1)
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def _points(shape: dict, where: str, count: int | None = None) -> np.ndarray:
    try:
        if not numbers_only(shape.get("points")):
            raise TypeError  # True/"12" would silently become 1.0/12.0
        p = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError):
        p = np.zeros((0, 3))
    if p.ndim != 2 or p.shape[1] != 2 or (count is not None and len(p) != count):
        need = f"{count} [x, y] points" if count else "a list of [x, y] points"
        raise fail(where, f"needs {need}, got {str(shape.get('points'))[:60]}", "redraw or delete this shape")
    if not np.isfinite(p).all():
        raise fail(where, "a coordinate is NaN or infinite", "redraw or delete this shape")
    return p


def _decode_mask_png(b64: Any, where: str) -> np.ndarray:
    if not isinstance(b64, str) or not b64:
        raise fail(where, "mask shape without 'mask' data", "redraw or delete this shape")
    try:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            if im.mode in ("RGBA", "LA", "PA"):
                return np.asarray(im.getchannel("A")) > 0
            return np.asarray(im.convert("L")) > 0
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise fail(where, f"mask is not a base64 PNG: {e}", "redraw or delete this shape") from None


def _mask_shape(shape: dict, size: tuple[int, int], where: str) -> np.ndarray:
    """Paste the crop at the box's top-left corner (rounded), like LabelMe (crop = box, corners inclusive)."""
    p = _points(shape, where, count=2)
    crop = _decode_mask_png(shape.get("mask"), where)
    x0, y0 = (int(round(v)) for v in p.min(axis=0))
    h, w = size
    canvas = np.zeros((h, w), dtype=bool)
    ys, xs = slice(max(y0, 0), min(y0 + crop.shape[0], h)), slice(max(x0, 0), min(x0 + crop.shape[1], w))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        raise fail(where, "the mask lies outside the image", "redraw or delete this shape")
    canvas[ys, xs] = crop[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
    return canvas


def _shape_geometry(shape: dict, stype: str, fix: SizeFix, where: str) -> np.ndarray:
    """A polygon ((N, 2) float) or, for mask shapes, an image-sized (H, W) bool mask, in image pixels."""
    if stype == "mask":
        return fix.mask(_mask_shape(shape, fix.canvas, where), where)
    if stype == "circle":
        (cx, cy), rim = _points(shape, where, count=2)
        radius = float(np.hypot(*(rim - (cx, cy))))
        h, w = fix.canvas
        if radius > (1 + 2 * OUTSIDE_SLACK) * max(h, w):  # before millions of vertices are made
            raise fail(where, f"circle radius {radius:.6g} is far larger than the {w}x{h} image",
                       "redraw or delete this shape")
        polygon = circle_polygon((cx, cy), radius)
    elif stype == "rectangle":
        p = _points(shape, where)
        (x0, y0), (x1, y1) = p.min(axis=0), p.max(axis=0)
        polygon = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    elif stype == "oriented_rectangle":
        polygon = _points(shape, where, count=4)
    else:  # polygon
        polygon = shape.get("points")
    return fix.points(validate_polygon(polygon, where), where)


# ------------------------------------------------------------------------------------------ loading


def _instance_annotation(
    parts: list[np.ndarray], name: str, size: tuple[int, int], where: str
) -> dict | None:
    """One instance from its shapes.

    All-polygon instances keep a multi-polygon segmentation (Detectron2 unions the polygons of one
    instance when it rasterises them), so a polygon-only dataset stays ``mask_format=polygon`` with exact
    vertices. As soon as a mask shape takes part, every part is rasterised and OR-ed into one RLE mask.
    """
    if all(p.dtype != bool for p in parts):
        return polygons_annotation(parts, name, size, where)
    h, w = size
    merged = np.zeros((h, w), dtype=bool)
    for p in parts:
        merged |= p if p.dtype == bool else rasterize_polygons([p], h, w)
    return mask_annotation(merged, name)


def _collect_instances(shapes: list, fix: SizeFix, where: str, ctx: LoadContext) -> dict:
    instances: dict[Any, tuple[str, str, list[np.ndarray]]] = {}
    for k, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise fail(f"{where} shape {k}", "shape is not an object", "save the file again in LabelMe")
        swhere = f"{where} shape {k} ({shape.get('label')!r})"
        stype = shape.get("shape_type") or "polygon"  # files from old LabelMe versions have no shape_type
        if stype not in _AREA_TYPES:  # line, linestrip, point, points (and unknown types)
            ctx.stats.skip(f"{stype} shape", swhere)
            continue
        if not str(shape.get("label") or "").strip():
            ctx.stats.skip("shape without a label", swhere)
            continue
        name = ctx.mapper.map(shape["label"])
        if name is None:
            ctx.stats.skip("label dropped by class_map", swhere)
            continue
        try:
            geometry = _shape_geometry(shape, stype, fix, swhere)
        except UserError as e:
            ctx.stats.problem(e, "invalid shape")  # raises unless building a report
            continue
        gid = shape.get("group_id")
        if isinstance(gid, (bool, float)) or not isinstance(gid, (int, str, type(None))):
            ctx.stats.problem(fail(swhere, f"group_id is {gid!r}, expected an integer or null",
                                   "fix the group ID in LabelMe"), "invalid shape")
            continue
        key = (name, gid) if gid is not None else (None, k)  # None: never a class name
        instances.setdefault(key, (name, swhere, []))[2].append(geometry)
    return instances


def _load_file(json_file: Path, ctx: LoadContext) -> dict:
    where = str(json_file)
    doc = read_json(json_file)
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise fail(where, "not a LabelMe file (no 'shapes' list)",
                   "keep only LabelMe JSON files in this folder")
    file_name = _resolve_image(json_file, doc, where)
    h, w = doc.get("imageHeight"), doc.get("imageWidth")
    if h is None and w is None:  # no size recorded: nothing to reconcile
        fix = SizeFix.of_image(file_name, where)
    else:
        fix = reconcile_size(file_name, h, w, where, relative=False, stats=ctx.stats,
                             what="imageWidth/imageHeight")
    annotations = []
    for name, swhere, parts in _collect_instances(doc["shapes"], fix, where, ctx).values():
        try:
            ann = _instance_annotation(parts, name, fix.size, swhere)
        except UserError as e:
            ctx.stats.problem(e, "invalid shape")  # raises unless building a report
            continue
        if ann is None:
            ctx.stats.skip("empty mask", swhere)
            continue
        ctx.mapper.observe(name, swhere)
        annotations.append(ann)
    return {"file_name": file_name, "height": fix.height, "width": fix.width, "image_id": where,
            "annotations": annotations}


def labelme_dicts(files: list[Path], mapper: ClassMapper, stats: LoadStats) -> list[dict]:
    """Dataset dicts (class names still pending) from LabelMe files; the building block of
    :func:`~maskseg_d2.data.formats.read_dataset`, for callers that share one ``mapper`` and ``stats``
    over several inputs.

    Args:
        files (list[Path]): LabelMe JSON files (see :func:`labelme_files`).
        mapper (ClassMapper): maps and records labels.
        stats (LoadStats): skip/adjust counters; a lenient one collects problems instead of raising.

    Returns:
        list[dict]: one dict per file, annotations carrying ``PENDING_NAME``.
    """
    ctx = LoadContext(stats.source, mapper, stats)
    dicts = []
    for f in progress(files, desc="reading LabelMe files"):
        try:
            dicts.append(_load_file(f, ctx))
        except UserError as e:
            stats.problem(e, "image or file")  # raises unless building a report
    return dicts
