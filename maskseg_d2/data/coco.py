"""COCO instances JSON (COCO 2017, any tool's COCO export, Label Studio's COCO export) -> dataset dicts
(the ``coco`` / ``labelstudio_coco`` parser of :func:`~maskseg_d2.data.formats.load_dataset`).

One dict per image, ``image_id`` = the COCO image id; ``file_name`` is relative to the image root.
Segmentations: polygons (list of flat ``[x1, y1, ...]`` lists) stay polygons, RLE with compressed (str)
or uncompressed (list) ``counts`` becomes compressed RLE with ``counts`` as str, ``iscrowd`` kept as is
(Detectron2 ignores crowd regions in training). An annotation with an empty ``segmentation`` (a box)
becomes a box-shaped mask, counted. Boxes are recomputed from the masks. Classes come from the category
*names* (ids may start at 0 or have gaps); discovered classes are the sorted names of the categories
that have annotations.

**Label Studio's COCO export** (``info.contributor == "Label Studio"``) has quirks handled here:
``file_name`` points into Label Studio's upload folder (``../media/upload/3/<8 hex>-<name>``), so the
image is found by name under the image root (the folder with the uploaded photos); image, annotation
and category ids start at 0; the same image appears once per annotation of a task (newest first: the
first is kept); rectangles have ``segmentation: []``; coordinates are percentages times a size read
*before* EXIF rotation (stretched back, see :mod:`maskseg_d2.data.images`); and brush regions are **not
exported at all** -- a warning points to the JSON export.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any
from urllib.parse import unquote

import numpy as np
from pycocotools import mask as mask_util

from ..errors import UserError, fail
from .coco_rle import RLEStringError, coco_rle_totals
from .geometry import mask_annotation, polygons_annotation, rle_annotation, validate_polygon
from .images import ImageIndex, SizeFix, reconcile_size
from .labelstudio_paths import resolve_name, resolve_relative, upload_names
from .loading import ClassMapper, LoadContext, LoadStats, progress

__all__ = ["coco_dicts", "is_coco", "is_labelstudio_coco"]

logger = logging.getLogger(__name__)

BOX_NOTE = "box without segmentation (box-shaped mask)"
LS_BRUSH_WARNING = (
    "{source}: this is Label Studio's COCO export, which leaves out brush (BrushLabels) regions and "
    "cannot tell unlabelled tasks from images without objects; {empty} of {total} image(s) have no "
    "annotation and are kept as negatives — if the project has brush masks or unfinished tasks, "
    "export it as 'JSON' instead (Export -> JSON) and load that"
)


def is_coco(doc: Any) -> bool:
    """bool: True for a COCO instances document (a dict with ``images`` and ``annotations`` lists)."""
    return isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(
        doc.get("annotations"), list)


def is_labelstudio_coco(doc: Any) -> bool:
    """bool: True for Label Studio's COCO export (``info.contributor == "Label Studio"``)."""
    info = doc.get("info") if isinstance(doc, dict) else None
    return is_coco(doc) and isinstance(info, dict) and info.get("contributor") == "Label Studio"


# ----------------------------------------------------------------------------------------- tables


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_id(obj: dict, where: str) -> int:
    v = obj.get("id")
    if not _is_int(v):
        raise fail(where, f"'id' is {v!r}, expected an integer", "fix the file or export it again")
    return v


def _categories(doc: dict, source: str, stats: LoadStats) -> dict[int, str]:
    cats = doc.get("categories", [])
    if not isinstance(cats, list):
        raise fail(source, "'categories' is not a list", "export the file again")
    names: dict[int, str] = {}
    for i, c in enumerate(cats):
        where = f"{source}: categories[{i}]"
        try:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise fail(where, "category without a 'name'", "give every category an id and a name")
            cid = _int_id(c, where)
            if cid in names:
                raise fail(where, f"category id {cid} appears twice ({names[cid]!r}, {c['name']!r})",
                           "give every category its own id")
        except UserError as e:
            stats.problem(e, "invalid category")  # raises unless lenient; its annotations are then skipped
            continue
        names[cid] = c["name"]
    return names


def _image_record(im: Any, where: str, ids: set[int]) -> int:
    if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or not im["file_name"]:
        raise fail(where, "image without 'file_name'", "give every image an id and a file_name")
    iid = _int_id(im, where)
    if iid in ids:
        raise fail(where, f"image id {iid} appears twice", "give every image its own id")
    return iid


def _images(doc: dict, source: str, labelstudio: bool,
            stats: LoadStats) -> tuple[list[dict], set[int], set[int]]:
    """Image records in file order; the ids of repeated Label Studio entries (dropped); and, in a
    lenient load, the ids listed twice (ambiguous: those images and their annotations are skipped)."""
    images, ids, dropped, ambiguous, by_file = [], set(), set(), set(), {}
    for i, im in enumerate(doc["images"]):
        where = f"{source}: images[{i}]"
        try:
            iid = _image_record(im, where, ids)
            if im["file_name"] in by_file and not labelstudio:
                first = by_file[im["file_name"]]
                raise fail(where, f"image {im['file_name']!r} is listed twice (ids {first} and {iid})",
                           "list each image once (merge their annotations)")
        except UserError as e:
            stats.problem(e, "invalid image")  # raises unless lenient
            if isinstance(im, dict) and _is_int(im.get("id")) and im["id"] in ids:
                ambiguous.add(im["id"])  # which image its annotations belong to is unknown
            continue
        ids.add(iid)
        if im["file_name"] in by_file:
            stats.skip("older annotation of the same task (Label Studio COCO repeats the image)",
                       f"image id {iid}")
            dropped.add(iid)  # Label Studio writes a task's annotations newest first: keep the first
            continue
        by_file[im["file_name"]] = iid
        images.append(im)
    for im in images:
        if im["id"] in ambiguous:
            stats.skip("image whose id appears twice", f"{source}: image {im['id']}")
    return [im for im in images if im["id"] not in ambiguous], dropped, ambiguous


def _annotations_by_image(doc: dict, source: str, image_ids: set[int], categories: dict[int, str],
                          stats: LoadStats) -> dict[int, list[tuple[int, dict]]]:
    by_image: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    seen: set[int] = set()
    for i, ann in enumerate(doc["annotations"]):
        where = f"{source}: annotations[{i}]"
        try:
            _check_annotation_ids(ann, where, seen, image_ids, categories)
        except UserError as e:
            stats.problem(e, "invalid annotation")  # raises unless lenient
            continue
        seen.add(ann["id"])
        by_image[ann["image_id"]].append((i, ann))
    return by_image


def _check_annotation_ids(ann: Any, where: str, seen: set[int], image_ids: set[int],
                          categories: dict[int, str]) -> None:
    if not isinstance(ann, dict):
        raise fail(where, "annotation is not an object", "export the file again")
    aid = _int_id(ann, where)
    if aid in seen:
        raise fail(where, f"annotation id {aid} appears twice", "give every annotation its own id")
    if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
        raise fail(f"{where} (id {aid})", f"image_id {ann.get('image_id')!r} is not in 'images'",
                   "fix the image_id or add the image")
    if not _is_int(ann.get("category_id")) or ann["category_id"] not in categories:
        raise fail(f"{where} (id {aid})", f"category_id {ann.get('category_id')!r} is not in "
                   f"'categories' (ids {sorted(categories)})", "fix the category_id or add the category")


# ---------------------------------------------------------------------------------------- images


def _resolve(file_name: str, index: ImageIndex, where: str, labelstudio: bool) -> str:
    """Find ``file_name`` under the image root (never outside it)."""
    if labelstudio:  # a path into Label Studio's upload folder: only the name means something here
        name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
        return resolve_name(upload_names(unquote(name)), index, file_name, where)
    if os.path.isabs(file_name) or PureWindowsPath(file_name).drive:
        try:
            rel = Path(file_name).resolve().relative_to(index.root.resolve()).as_posix()
        except ValueError:
            raise fail(where, f"image path {file_name!r} is absolute and outside the image folder "
                       f"{index.root}", "use file names relative to the image folder (--image-root / "
                       "dataset.images)") from None
        return resolve_relative(rel, index, file_name, where)
    return resolve_relative(posixpath.normpath(file_name.replace("\\", "/")), index, file_name, where)


def _size_fix(im: dict, file_name: str, where: str, labelstudio: bool, stats: LoadStats) -> SizeFix:
    h, w = im.get("height"), im.get("width")
    if h is None and w is None:  # no size recorded: nothing to reconcile
        return SizeFix.of_image(file_name, where)
    # Label Studio derived its pixels from percentages x the size it recorded: relative
    return reconcile_size(file_name, h, w, where, relative=labelstudio, stats=stats, what="width/height")


# ---------------------------------------------------------------------------------- segmentation


def _box_polygon(bbox: Any, where: str) -> np.ndarray:
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise fail(where, f"no segmentation and no valid bbox ({str(bbox)[:60]})",
                   "give the annotation a segmentation or a bbox [x, y, w, h]") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise fail(where, f"no segmentation and bbox {[x, y, w, h]} is empty or not finite",
                   "redraw or delete this annotation")
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def _polygons(seg: list, where: str) -> list[np.ndarray]:
    polys = []
    for k, flat in enumerate(seg):
        pwhere = f"{where} polygon {k}" if len(seg) > 1 else where
        if not isinstance(flat, list) or len(flat) % 2:
            raise fail(pwhere, f"polygon is not a flat list of x, y numbers: {str(flat)[:60]}",
                       "write polygons as [x1, y1, x2, y2, ...]")
        polys.append(validate_polygon(np.reshape(np.asarray(flat, dtype=object), (-1, 2)).tolist(), pwhere))
    return polys


def _rle_runs(doc: dict) -> dict[int, tuple[int, int]]:
    """annotation index -> (pixels covered, shortest run) of every compressed RLE, in one numpy pass; {}
    when one string is malformed (each is then decoded on its own, to name it)."""
    segs = [a.get("segmentation") if isinstance(a, dict) else None for a in doc["annotations"]]
    index = [i for i, seg in enumerate(segs)
             if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes))]
    try:
        totals, shortest = coco_rle_totals([segs[i]["counts"] for i in index])
    except RLEStringError:
        return {}
    return {i: (int(t), int(m)) for i, t, m in zip(index, totals, shortest)}


def _rle(seg: dict, where: str, fix: SizeFix, runs: tuple[int, int] | None = None) -> dict:
    """A checked compressed RLE: its size is the canvas, its runs cover exactly H*W pixels (pycocotools
    does not check: a short string leaves pixels unset, a long one writes past the mask). ``runs``:
    (pixels covered, shortest run) of ``counts`` when already decoded (:func:`_rle_runs`)."""
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        raise fail(where, f"RLE 'size' is {size!r}, expected [height, width]", "export the file again")
    fix.check_mask_size((size[0], size[1]), where)  # before anything is decoded at that size
    if isinstance(counts, list):  # uncompressed RLE (run lengths, column-major)
        if not all(_is_int(v) and v >= 0 for v in counts):
            raise fail(where, "uncompressed RLE counts are not non-negative integers",
                       "export the file again")
        total = sum(counts)
    elif isinstance(counts, (str, bytes)):
        try:
            total, shortest = runs or (int(v[0]) for v in coco_rle_totals([counts]))
        except RLEStringError as e:
            raise fail(where, f"RLE counts are not a COCO RLE string: {e.reason}",
                       "export the file again") from None
        if shortest < 0:
            raise fail(where, "RLE counts hold a negative run", "export the file again")
    else:
        raise fail(where, "RLE without 'counts'", "export the file again")
    if total != size[0] * size[1]:
        raise fail(where, f"RLE counts cover {total} pixels, not {size[1]}x{size[0]} (WxH) = "
                   f"{size[0] * size[1]}", "export the file again")
    if isinstance(counts, list):
        return mask_util.frPyObjects(seg, *size)  # compress it
    return {"size": size, "counts": counts}


def _annotation(ann: dict, name: str, fix: SizeFix, where: str, stats: LoadStats,
                runs: tuple[int, int] | None = None) -> dict | None:
    seg, iscrowd = ann.get("segmentation"), ann.get("iscrowd") or 0
    if iscrowd not in (0, 1):  # bool("0") is True: the instance would silently become an ignored crowd
        raise fail(where, f"iscrowd is {iscrowd!r}, expected 0 or 1", "fix the annotation")
    iscrowd = int(iscrowd)
    if isinstance(seg, dict):
        rle = _rle(seg, where, fix, runs)
        if tuple(rle["size"]) == fix.size and fix.canvas == fix.size:
            return rle_annotation(rle, name, iscrowd)
        mask = mask_util.decode(rle).astype(bool)  # sized for the canvas: map it to the image
        out = mask_annotation(fix.mask(mask, where), name)
        if out is not None:
            out["iscrowd"] = iscrowd
        return out
    if seg in (None, []):
        stats.note(BOX_NOTE, where)
        polygons = [_box_polygon(ann.get("bbox"), where)]
    elif isinstance(seg, list):
        polygons = _polygons(seg, where)
    else:
        raise fail(where, f"segmentation is a {type(seg).__name__}", "use polygons or an RLE dict")
    out = polygons_annotation([fix.points(p, where) for p in polygons], name, fix.size, where)
    out["iscrowd"] = iscrowd
    return out


# ---------------------------------------------------------------------------------------- loading


@dataclass
class _Context(LoadContext):
    index: ImageIndex
    labelstudio: bool
    rle_runs: dict[int, tuple[int, int]]  # annotation index -> (pixels covered, shortest run)


def _image_dict(im: dict, anns: list[tuple[int, dict]], categories: dict[int, str], ctx: _Context) -> dict:
    source, stats, mapper = ctx.source, ctx.stats, ctx.mapper
    where = f"{source}: image {im['id']} ({im['file_name']})"
    file_name = _resolve(im["file_name"], ctx.index, where, ctx.labelstudio)
    fix = _size_fix(im, file_name, where, ctx.labelstudio, stats)
    out = []
    for i, ann in anns:
        awhere = f"{source}: annotation {ann['id']} (annotations[{i}], image {im['id']})"
        if ann.get("segmentation") in (None, []) and "keypoints" in ann:
            stats.skip("keypoints annotation (no mask)", awhere)
            continue
        name = mapper.map(categories[ann["category_id"]])
        if name is None:
            stats.skip("label dropped by class_map", awhere)
            continue
        try:
            a = _annotation(ann, name, fix, awhere, stats, ctx.rle_runs.get(i))
        except UserError as e:
            stats.problem(e, "invalid annotation")  # raises unless building a report
            continue
        if a is None:
            stats.skip("empty mask", awhere)
            continue
        mapper.observe(name, awhere)
        out.append(a)
    return {"file_name": file_name, "height": fix.height, "width": fix.width, "image_id": im["id"],
            "annotations": out}


def coco_dicts(doc: Any, source: str, image_root: str | os.PathLike, mapper: ClassMapper, stats: LoadStats,
               labelstudio: bool | None = None) -> list[dict]:
    """Dataset dicts (class names still pending) from a parsed COCO document.

    Args:
        doc: the parsed JSON.
        source (str): the file, named in errors.
        image_root (str or PathLike): folder the ``file_name`` paths are relative to.
        mapper (ClassMapper): maps and records labels (category names).
        stats (LoadStats): skip/adjust counters; a lenient one collects problems instead of raising.
        labelstudio (bool or None): treat as Label Studio's COCO export; None detects it.

    Returns:
        list[dict]: one dict per image, in file order.
    """
    if not is_coco(doc):
        what = f"a JSON {type(doc).__name__}" + (" without 'images' and 'annotations' lists"
                                                 if isinstance(doc, dict) else "")
        raise fail(source, f"not a COCO file: {what}", "pass a COCO instances JSON, or set the format")
    labelstudio = is_labelstudio_coco(doc) if labelstudio is None else labelstudio
    categories = _categories(doc, source, stats)
    images, dropped, ambiguous = _images(doc, source, labelstudio, stats)
    all_ids = {im["id"] for im in images} | dropped | ambiguous
    by_image = _annotations_by_image(doc, source, all_ids, categories, stats)
    for iid in ambiguous:
        for i, ann in by_image.get(iid, []):
            stats.skip("annotation of an image id that appears twice", f"{source}: annotation {ann['id']}")
    ctx = _Context(source, mapper, stats, ImageIndex(image_root, source), labelstudio, _rle_runs(doc))
    dicts = []
    for im in progress(images, desc=f"reading {Path(source).name}"):
        try:
            dicts.append(_image_dict(im, by_image.get(im["id"], []), categories, ctx))
        except UserError as e:
            stats.problem(e, "image")  # raises unless building a report
    if labelstudio:
        empty = sum(1 for d in dicts if not d["annotations"])
        logger.warning(LS_BRUSH_WARNING.format(source=source, empty=empty, total=len(dicts)))
    return dicts
