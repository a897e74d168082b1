"""Label Studio JSON export (a list of tasks) -> Detectron2 dataset dicts (the ``labelstudio`` parser of
:func:`~maskseg_d2.data.formats.load_dataset`).

One dict per labelled task, ``image_id`` = the task id. Per task, cancelled annotations are ignored and
one annotation is chosen by ``pick`` (:func:`pick_annotation`; default: the ``ground_truth`` one, else
the most recently updated). A task without a (non-cancelled) annotation is skipped and counted; an
annotation with an empty ``result`` is kept as an image without objects. Supported result types:
``polygonlabels`` and ``rectanglelabels`` (rotation included) become polygon segmentations in pixels,
``brushlabels`` (Label Studio's own RLE, decoded by :mod:`maskseg_d2.data.labelstudio_rle`) COCO RLE
dicts. Other result types (keypoints, choices, text, relations ...) and empty brush masks are skipped and
counted. Sizes are reconciled with the image (:func:`~maskseg_d2.data.images.reconcile_size`:
EXIF-transposed or resized images are handled and counted). Images are found under the image root
(searched recursively) by :func:`~maskseg_d2.data.labelstudio_paths.resolve_image`. See ``/work/shared``
FORMATS.md §2 for the export format.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UserError, fail
from . import labelstudio_rle
from .geometry import GeometryError, mask_annotation, polygons_annotation, validate_polygon
from .images import IMAGE_EXTENSIONS, ImageIndex, SizeFix, check_declared_size, reconcile_size
from .labelstudio_paths import resolve_image
from .loading import ClassMapper, LoadContext, LoadStats, progress

__all__ = ["pick_annotation", "rectangle_corners", "tasks_to_dicts", "PICK_POLICIES", "GEOMETRY_TYPES"]

PICK_POLICIES = ("ground_truth_then_latest", "latest", "first")
_IMAGE_KEYS = ("image", "img", "photo", "picture", "url")
# Label Studio keeps every point inside the image (0..100 %); a point of slack absorbs float noise and
# clicks on the border. Beyond that the number is not a percentage (pixels written as percent ...).
PERCENT_SLACK = 1.0


# ----------------------------------------------------------------------------------- task image


def _image_uri(task: dict, image_key: str | None, where: str) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise fail(where, "task has no 'data' object", "export the project as 'JSON' (not JSON_MIN/CSV)")
    if image_key is not None:
        if not isinstance(data.get(image_key), str):
            raise fail(where, f"task data has no '{image_key}' field (has: {', '.join(data)})",
                       "set dataset.image_key=<name>, the $name of your <Image> tag without the $")
        return data[image_key]
    for key in _IMAGE_KEYS:
        if isinstance(data.get(key), str):
            return data[key]
    strings = [v for v in data.values() if isinstance(v, str)]
    if len(strings) != 1:  # several text fields: the image is the one that looks like a path or URL
        strings = [v for v in strings if "/" in v or v.lower().endswith(IMAGE_EXTENSIONS)]
    if len(strings) == 1:
        return strings[0]
    raise fail(where, f"cannot tell which task data field is the image (fields: {', '.join(data)})",
               "set dataset.image_key=<name>, the $name of your <Image> tag without the $")


# ----------------------------------------------------------------------------------- annotation pick


def _timestamp(ann: dict) -> datetime:
    for key in ("updated_at", "created_at"):
        s = ann.get(key)
        if isinstance(s, str):
            try:
                t = datetime.fromisoformat(s.replace("Z", "+00:00"))
            except ValueError:
                continue
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return datetime.min.replace(tzinfo=timezone.utc)


def _latest(anns: list[dict]) -> dict:
    return max(enumerate(anns), key=lambda ia: (_timestamp(ia[1]), ia[0]))[1]


def pick_annotation(annotations: list[dict], pick: str = "ground_truth_then_latest") -> dict | None:
    """Choose the annotation of a task that becomes the training target.

    Cancelled (skipped) annotations are ignored. Policies:

    - ``"ground_truth_then_latest"`` (default): the annotation marked ``ground_truth`` (the newest if
      several); otherwise the most recently updated (``updated_at``, else ``created_at``; ties -> the
      later one in the list).
    - ``"latest"``: the most recently updated, ignoring ``ground_truth``.
    - ``"first"``: the first one in the export.

    Args:
        annotations (list[dict]): the task's ``annotations``.
        pick (str): one of :data:`PICK_POLICIES`.

    Returns:
        dict or None: the chosen annotation; None when none is left (unlabelled task).
    """
    live = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None
    if pick == "first":
        return live[0]
    if pick == "ground_truth_then_latest":
        truth = [a for a in live if a.get("ground_truth")]
        return _latest(truth or live)
    return _latest(live)


# --------------------------------------------------------------------------------------- results


def _check_percent(values: np.ndarray, what: str, where: str) -> None:
    bad = values[(values < -PERCENT_SLACK) | (values > 100 + PERCENT_SLACK)]
    if bad.size:
        raise GeometryError(str(fail(
            where, f"{what} {bad.flat[0]:.6g} is outside 0-100 (Label Studio stores percent of the image)",
            "fix or delete this region (were pixels written as percent?)")), "outside the image")


def _percent_points(points: Any, width: int, height: int, where: str) -> np.ndarray:
    p = validate_polygon(points, where)
    _check_percent(p, "a point coordinate", where)
    return p * np.array([width / 100.0, height / 100.0])


def _number(value: dict, key: str, where: str, default: float | None = None) -> float:
    v = value.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise fail(where, f"value.{key} is {v!r}, expected a finite number", "fix or delete this region")
    return float(v)


def _percent(value: dict, key: str, where: str, positive: bool = False) -> float:
    v = _number(value, key, where)
    if positive and v <= 0:  # a negative width would flip the box silently
        raise GeometryError(str(fail(where, f"value.{key} is {v:g}, expected > 0",
                                     "redraw or delete this region")), "zero area")
    _check_percent(np.array([v]), f"value.{key}", where)
    return v


def rectangle_corners(x: float, y: float, w: float, h: float, rotation: float) -> np.ndarray:
    """Corners of a Label Studio rectangle in pixels.

    Args:
        x, y (float): top-left corner before rotation (pixels).
        w, h (float): width and height (pixels).
        rotation (float): degrees, clockwise on screen (image y points down), about (x, y).

    Returns:
        np.ndarray: (4, 2) corners: top-left, top-right, bottom-right, bottom-left (before rotation).
    """
    t = math.radians(rotation)
    c, s = math.cos(t), math.sin(t)
    local = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    rot = np.array([[c, -s], [s, c]])  # with y down, this turns +x towards +y: clockwise on screen
    return local @ rot.T + np.array([x, y])


def _polygon_result(value: dict, size: tuple[int, int], where: str) -> list[np.ndarray]:
    h, w = size
    return [_percent_points(value.get("points"), w, h, where)]


def _rectangle_result(value: dict, size: tuple[int, int], where: str) -> list[np.ndarray]:
    h, w = size
    x, y = _percent(value, "x", where) * w / 100, _percent(value, "y", where) * h / 100
    bw, bh = _percent(value, "width", where, True) * w / 100, _percent(value, "height", where, True) * h / 100
    rotation = _number(value, "rotation", where, 0.0)
    if abs(rotation) > 360:  # Label Studio stores 0..360 degrees
        raise fail(where, f"value.rotation is {rotation:g}, expected degrees in 0..360",
                   "fix or delete this region")
    corners = rectangle_corners(x, y, bw, bh, rotation)
    return [validate_polygon(corners, where)]


def _brush_result(value: dict, size: tuple[int, int], where: str) -> np.ndarray:
    if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise fail(where, f"brush region without an RLE list (format {value.get('format')!r})",
                   "export the project as 'JSON' from Label Studio")
    h, w = size
    try:
        values = labelstudio_rle.decode(value["rle"], expected=h * w * 4)  # checked before anything is allocated
    except labelstudio_rle.CountMismatch as e:
        raise fail(where, f"brush RLE holds {e.num} values but the {w}x{h} image needs {h * w * 4} "
                   "(RGBA)", "re-export the project, or delete this region") from None
    except Exception as e:  # corrupt RLE: name the region
        raise fail(where, f"cannot decode the brush RLE: {e}",
                   "re-export the project, or delete this region") from None
    # alpha >= 128, as labelstudio_rle.rle_to_mask; read as little-endian uint32 (alpha = top byte), the RGBA bytes
    # are scanned contiguously: 4x faster than the strided alpha slice on a 1024x768 mask
    return (values.view("<u4") >= 0x80000000).reshape(h, w)


_GEOMETRY: dict[str, Callable[[dict, tuple[int, int], str], Any]] = {
    "polygonlabels": _polygon_result,
    "rectanglelabels": _rectangle_result,
    "brushlabels": _brush_result,
}
GEOMETRY_TYPES = tuple(_GEOMETRY)  # result types that become instances


@dataclass
class _Context(LoadContext):
    index: ImageIndex
    pick: str
    image_key: str | None
    seen_ids: dict[Any, int] = field(default_factory=dict)  # task id -> its index in the file


def _result_size(res: dict, where: str) -> tuple[int, int]:
    return check_declared_size(res.get("original_height"), res.get("original_width"), where,
                               "original_width/original_height")


def _result_annotation(res: dict, fix: SizeFix, where: str, ctx: _Context) -> dict | None:
    rtype = res["type"]
    value = res.get("value")
    if not isinstance(value, dict):
        raise fail(where, "result has no 'value' object", "re-export the project as 'JSON'")
    labels = value.get(rtype)
    if not isinstance(labels, list) or not labels or not str(labels[0]).strip():
        ctx.stats.skip(f"{rtype} region without a label", where)
        return None
    if len(labels) > 1:
        raise fail(where, f"region has {len(labels)} labels {labels}",
                   "keep one label per region (Mask R-CNN predicts one class per instance)")
    name = ctx.mapper.map(labels[0])
    if name is None:
        ctx.stats.skip("label dropped by class_map", where)
        return None
    geometry = _GEOMETRY[rtype](value, fix.canvas, where)
    if isinstance(geometry, np.ndarray):
        ann = mask_annotation(fix.mask(geometry, where), name)
        if ann is None:
            ctx.stats.skip("empty brush mask", where)
            return None
    else:
        ann = polygons_annotation([fix.points(p, where) for p in geometry], name, fix.size, where)
    ctx.mapper.observe(name, where)
    return ann


def _geometry_results(results: list, where: str, ctx: _Context) -> list[tuple[dict, str]]:
    """The results this importer turns into instances, with their item names; others are counted."""
    kept = []
    for j, res in enumerate(results):
        if not isinstance(res, dict):
            raise fail(f"{where} result #{j}", "result is not an object", "re-export the project as 'JSON'")
        rwhere = f"{where} result {res.get('id', '?')} (#{j}, {res.get('type')})"
        if not isinstance(res.get("type"), str) or res["type"] not in _GEOMETRY:
            ctx.stats.skip(f"{res.get('type')} result", rwhere)
            continue
        if res.get("image_rotation"):
            rotation = res["image_rotation"]
            raise fail(rwhere, f"the image was rotated in the editor (image_rotation={rotation})",
                       "reset the rotation in Label Studio, redo this region and export again")
        kept.append((res, rwhere))
    return kept


def _task_size(kept: list[tuple[dict, str]]) -> tuple[int, int] | None:
    size = None
    for res, rwhere in kept:
        rsize = _result_size(res, rwhere)
        if size is not None and rsize != size:
            raise fail(rwhere, f"original size {rsize[1]}x{rsize[0]} differs from {size[1]}x{size[0]} "
                       "of the task's other regions", "re-export the project as 'JSON'")
        size = rsize
    return size


def _task_annotations(results: list, file_name: str, where: str, ctx: _Context) -> tuple[list[dict], SizeFix]:
    kept = _geometry_results(results, where, ctx)
    size = _task_size(kept)
    if size is None:
        fix = SizeFix.of_image(file_name, where)
    else:  # percentages: the geometry follows the image whatever size Label Studio recorded
        fix = reconcile_size(file_name, *size, where, relative=True, stats=ctx.stats)
    anns: list[dict] = []
    for res, rwhere in kept:
        try:
            ann = _result_annotation(res, fix, rwhere, ctx)
        except UserError as e:
            ctx.stats.problem(e, "invalid region")  # raises unless building a report
            continue
        if ann is not None:
            anns.append(ann)
    return anns, fix


def _load_task(task: Any, i: int, ctx: _Context) -> dict | None:
    if not isinstance(task, dict):
        raise fail(f"{ctx.source}: task #{i}", "task is not an object", "export the project as 'JSON'")
    task_id = task.get("id", f"#{i}")
    if isinstance(task_id, bool) or not isinstance(task_id, (int, str)):
        raise fail(f"{ctx.source}: task #{i}", f"task id is {task_id!r}, expected an integer",
                   "export the project as 'JSON' again")
    where = f"{ctx.source}: task {task_id}"
    if task_id in ctx.seen_ids:  # two exports pasted together: the ids no longer name one task
        raise fail(where, f"task id {task_id} appears twice (tasks #{ctx.seen_ids[task_id]} and #{i})",
                   "export the project once, or keep each export in its own file")
    ctx.seen_ids[task_id] = i
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise fail(where, "'annotations' is not a list", "export the project as 'JSON'")
    ann = pick_annotation(annotations, ctx.pick)
    if ann is None:
        ctx.stats.skip("unlabelled task", f"task {task_id}")
        return None
    uri = _image_uri(task, ctx.image_key, where)
    file_name = resolve_image(uri, ctx.index.root, ctx.index, where)
    results = ann.get("result")
    if not isinstance(results, list):  # missing is not "no objects" ([]): the export is damaged
        raise fail(where, "annotation 'result' is missing or not a list", "export the project as 'JSON'")
    anns, fix = _task_annotations(results, file_name, where, ctx)
    return {"file_name": file_name, "height": fix.height, "width": fix.width, "image_id": task_id,
            "annotations": anns}


def tasks_to_dicts(
    tasks: list, source: str, image_root: str | os.PathLike, mapper: ClassMapper, stats: LoadStats,
    pick: str = "ground_truth_then_latest", image_key: str | None = None,
) -> list[dict]:
    """Dataset dicts (class names still pending) from a parsed list of Label Studio tasks.

    The building block of :func:`~maskseg_d2.data.formats.read_dataset` for the JSON export (and for
    JSON_MIN, whose records are rebuilt into tasks): callers share one ``mapper`` and ``stats`` over
    several files, then call :meth:`ClassMapper.assign`.

    Args:
        tasks (list): the parsed export.
        source (str): the file, named in errors.
        image_root (str or PathLike): folder with the photos.
        mapper (ClassMapper): maps and records labels.
        stats (LoadStats): skip/adjust counters; a lenient one collects problems instead of raising.
        pick (str): annotation choice policy, one of :data:`PICK_POLICIES`.
        image_key (str or None): the task ``data`` field holding the image; None guesses it.

    Returns:
        list[dict]: one dict per labelled task, annotations carrying ``PENDING_NAME``.
    """
    if pick not in PICK_POLICIES:
        raise fail(f"pick={pick}", "unknown annotation pick policy", f"use one of {', '.join(PICK_POLICIES)}")
    ctx = _Context(source, mapper, stats, ImageIndex(image_root, source), pick, image_key)
    dicts = []
    for i, task in enumerate(progress(tasks, desc=f"reading {Path(source).name}")):
        try:
            d = _load_task(task, i, ctx)
        except UserError as e:
            stats.problem(e, "image or task")  # raises unless building a report
            continue
        if d is not None:
            dicts.append(d)
    return dicts
