"""Checked inputs of a COCO evaluation: ground truth and results, read, validated, normalized.

Everything is checked in Python before any of it reaches C code (pycocotools, faster-coco-eval): a NaN,
infinite or huge coordinate segfaults their polygon rasteriser, an RLE whose counts do not cover exactly
height x width pixels is silently mis-read (too short) or aborts them (too long), and an id that is a
list or a string crashes their indexes. Each problem becomes a one-line
:class:`~maskseg_d2.errors.UserError` naming the file and the item (``annotation #i``, ``result #i``,
image id); what can be repaired (annotation id 0, a missing ``area``) is repaired and counted in the
report. The checks on valid inputs cost a few C-level passes per item plus one numpy pass over all boxes
and RLE strings (see ``benchmarks/bench_eval.py``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import reprlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_util

from ..data.coco_rle import RLEStringError, coco_rle_totals, rle_string_problem
from ..data.images import MAX_IMAGE_PIXELS
from ..data.jsonio import read_json
from ..errors import UserError, fail

__all__ = [
    "TASKS",
    "COORD_FACTOR",
    "GroundTruth",
    "Predictions",
    "load_ground_truth",
    "load_predictions",
    "gc_paused",
    "image_size",
]

logger = logging.getLogger(__name__)

TASKS = ("bbox", "segm")
# A coordinate farther than this many image sizes from the image is a wrong unit or a wrong image, and
# huge values make pycocotools' rasteriser allocate (or index) without bound.
COORD_FACTOR = 10
_SIDE_WITHOUT_SIZE = 65_535  # bound for images without height/width: the largest JPEG side
_MAX_ID = 2**53  # ids go through float64 arrays in the backends: larger ones would collide
_MAX_AREA = COORD_FACTOR**2 * MAX_IMAGE_PIXELS
_NUMBER_TYPES = frozenset({int, float})  # exact types: JSON gives int/float; bool is not a number here
_GT_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")
_GT_KEY_SET = frozenset(_GT_KEYS)
_REPR = reprlib.Repr()  # offending values in messages: short and one line, however big or deep
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 6, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 30


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    # COCO evaluation allocates ~10 dicts per instance and frees none until the end; the cyclic GC then
    # rescans them over and over (~30% of the time on 100k results). Reference counting still frees memory.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class GroundTruth:
    """A checked COCO instances dataset.

    Attributes:
        dataset (dict): ``images`` (int ids; ``height``/``width`` ints when given), ``annotations``
            (ids >= 1, ``area``, ``bbox``, ``iscrowd`` filled, only the COCO keys), ``categories`` (int ids).
        source (str): file path or a name, for messages.
        warnings (list[str]): what was repaired (counted), shown in the report.
    """

    dataset: dict
    source: str = "gt"
    warnings: list[str] = field(default_factory=list)

    @property
    def categories(self) -> list[dict]:
        return sorted(self.dataset["categories"], key=lambda c: c["id"])

    @property
    def cat_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    @property
    def class_names(self) -> list[str]:
        return [str(c.get("name", c["id"])) for c in self.categories]

    @property
    def images(self) -> dict[int, dict]:
        return {img["id"]: img for img in self.dataset["images"]}


@dataclass
class Predictions:
    """Checked COCO results: ``image_id``, ``category_id``, ``score`` (float), ``bbox`` ([x, y, w, h] or
    None), ``segmentation`` (compressed RLE with str counts, or None), in the file's order (ties keep it).

    Attributes:
        results (list[dict]): normalized results.
        tasks (tuple[str]): what they can be evaluated for: ``bbox`` when every result has a box, ``segm``
            when every result has a mask.
        source (str): file path or a name, for messages.
        warnings (list[str]): counted conversions (polygons -> RLE ...), shown in the report.
    """

    results: list[dict]
    tasks: tuple[str, ...]
    source: str = "pred"
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ values


def _short(value: Any) -> str:
    return _REPR.repr(value)


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES and v == v  # NaN != NaN


def _int_id(v: Any) -> int | None:
    """An id as JSON writes it (``3``, or ``3.0``; numpy scalars from code too) as int; None for anything
    else (``"3"``, ``[3]``, True, NaN)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v) if -_MAX_ID < v < _MAX_ID else None
    if isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < _MAX_ID:
        return int(v)
    return None


def _is_box(box: Any) -> bool:
    return type(box) in (list, tuple) and len(box) == 4 and set(map(type, box)) <= _NUMBER_TYPES


def _first_bad_box(boxes: list, limits: Sequence[float]) -> tuple[int, str]:
    """First box (index into ``boxes``) that is not 4 numbers, is NaN/inf, has a negative size, or lies
    more than COORD_FACTOR image sizes away, and ``"shape"`` or ``"far"``; ``(-1, "")`` when all are fine.
    Types are checked in one C-level pass over all numbers, values in one numpy pass."""
    if not boxes:
        return -1, ""
    numbers = set(map(type, itertools.chain.from_iterable(boxes))) if set(map(len, boxes)) == {4} else {str}
    if not numbers <= _NUMBER_TYPES:
        return next(k for k, box in enumerate(boxes) if not _is_box(box)), "shape"
    try:
        b = np.fromiter(itertools.chain.from_iterable(boxes), np.float64, 4 * len(boxes)).reshape(-1, 4)
    except OverflowError:  # an int beyond float range: the first one is far away
        return next(k for k, box in enumerate(boxes) if any(abs(v) > 1e300 for v in box)), "far"
    shape = ~np.isfinite(b).all(axis=1) | (b[:, 2] < 0) | (b[:, 3] < 0)
    with np.errstate(invalid="ignore"):
        far = np.abs(b).max(axis=1) > np.asarray(limits)
    bad = np.flatnonzero(shape | far)
    if not bad.size:
        return -1, ""
    return int(bad[0]), "shape" if shape[bad[0]] else "far"


def _polygon_problem(segm: Any, limit: float) -> str | None:
    """'' for usable polygons, None when ``segm`` is not a list of lists of >= 6 numbers, else what is
    wrong with a coordinate (NaN/inf, or more than ``limit`` away)."""
    if type(segm) is not list or not segm:
        return None
    for p in segm:
        # set(map(type, ...)), sum, min and max iterate in C: ~50x faster than a Python loop on 1M+ numbers
        if type(p) is not list or len(p) < 6 or len(p) % 2 or not set(map(type, p)) <= _NUMBER_TYPES:
            return None
        try:
            total = sum(p)
        except OverflowError:  # an int beyond float range next to floats
            total = 0
        if total - total != 0:  # NaN or infinite somewhere (inf - inf is NaN)
            return "a polygon coordinate is NaN or infinite"
        far = min(p) if min(p) < -limit else max(p)
        if abs(far) > limit:
            v = float(far) if abs(far) < 1e300 else math.inf  # an int beyond float range
            return f"polygon coordinate {v:g} is more than {COORD_FACTOR}x the image size outside the image"
    return ""


def _rle_problem(segm: Mapping, h: int, w: int) -> str:
    """'' when ``segm`` is an RLE of an h x w image (compressed counts: characters only, their total is
    checked in one batch by :func:`_first_bad_rle`), else what is wrong with it."""
    size, counts = segm.get("size"), segm.get("counts")
    if not (type(size) in (list, tuple) and len(size) == 2 and all(map(_is_number, size))):
        return f"RLE 'size' {_short(size)} is not [height, width]"
    if size[0] != h or size[1] != w:
        return f"RLE size {_short(list(size))} differs from the image size [{h}, {w}] in the GT"
    if type(counts) is list:  # set(map(type)), min and sum iterate in C
        if counts and (not set(map(type, counts)) <= {int} or min(counts) < 0):
            return f"uncompressed RLE counts must be non-negative ints summing to height*width = {h * w}"
        if sum(counts) != h * w:
            return f"RLE counts cover {sum(counts)} pixels, not height*width = {h * w}"
        return ""
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        return "compressed RLE counts are not a pycocotools string"
    why = rle_string_problem(counts)
    return f"compressed RLE counts are not a pycocotools string: {why}" if why else ""


def _first_bad_rle(counts: list[str], areas: list[int]) -> tuple[int, str]:
    """The first compressed RLE string (index into ``counts``) that is not a pycocotools string, holds a
    negative run or does not cover exactly its image's ``areas[k]`` = height*width pixels, and what is
    wrong; ``(-1, "")`` when all are fine. One vectorised decode of all strings (pycocotools would trust
    them: too short leaves pixels unset, too long writes past the mask)."""
    if not counts:
        return -1, ""
    try:
        totals, mins = coco_rle_totals(counts)
    except RLEStringError as e:  # the first malformed string; one before it may cover the wrong pixel count
        k, why = _first_bad_rle(counts[: e.index], areas[: e.index])
        return (k, why) if k >= 0 else (e.index, f"compressed RLE counts are not a pycocotools string: {e.reason}")
    bad = np.flatnonzero((totals != np.asarray(areas, dtype=np.int64)) | (mins < 0))
    if not bad.size:
        return -1, ""
    k = int(bad[0])
    if mins[k] < 0:
        return k, "RLE counts hold a negative run"
    return k, f"RLE counts cover {int(totals[k])} pixels, not height*width = {areas[k]}"


# --------------------------------------------------------------------------------------------- files


def _not_coco_gt(data: Any, where: str) -> UserError:
    """The error for a GT that is not a COCO instances dict, saying what it looks like instead."""
    first = data[0] if isinstance(data, list) and data else data
    keys = set(first) if isinstance(first, dict) else set()
    if {"image_id", "score"} <= keys:
        return fail(
            where, "this looks like COCO results (predictions), not the ground truth", "swap gt= and pred="
        )
    if keys & {"data", "annotation_id", "shapes"}:
        kind = "a LabelMe file" if "shapes" in keys else "a Label Studio export"
        return fail(
            where,
            f"this is {kind}, not a COCO instances file",
            f"convert it first: python tools/convert.py {where} --image-root <images> -o gt.json, "
            "then gt=gt.json",
        )
    return fail(
        where,
        "not a COCO instances file (no 'images' list)",
        "give the annotation JSON with images/annotations/categories",
    )


# ------------------------------------------------------------------------------------- ground truth


def image_size(img: Mapping, where: str) -> tuple[int, int]:
    """``(height, width)`` of a GT image entry; a one-line error when missing (masks need them)."""
    h, w = img.get("height"), img.get("width")
    if not (_is_number(h) and _is_number(w) and h > 0 and w > 0):
        raise fail(
            where, f"image id {img.get('id')} has no valid height/width", "add them to its 'images' entry"
        )
    return int(h), int(w)


def load_ground_truth(source: str | Mapping, name: str = "gt") -> GroundTruth:
    """Read and check a COCO instances file (or dict); repair what can be repaired and say so.

    Repairs (each counted in ``warnings``): annotation ids that are missing, 0, duplicated or not integers
    are renumbered 1..N (pycocotools treats id 0 as "unmatched", silently counting a hit as a miss); a
    missing ``iscrowd`` is 0; a missing ``area`` is the mask area (else the box area); a missing ``bbox``
    comes from the mask. Everything else that is wrong (see the module docstring) is a UserError.

    Args:
        source (str or dict): path to the JSON file, or the loaded dict (not modified).
        name (str): how to call it in messages when ``source`` is a dict.

    Returns:
        GroundTruth: the checked dataset.
    """
    where = source if isinstance(source, str) else name
    if isinstance(source, str):
        data = read_json(source, "ground-truth file", "gt=", "give the COCO instances JSON of the images")
    else:
        data = source
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _not_coco_gt(data, where)
    cats = _check_categories(data.get("categories"), where)
    if not isinstance(data.get("annotations"), list):
        raise fail(
            where, "the GT has no 'annotations' list (a test-set file?)", "give the file with annotations"
        )
    images = _check_images(data["images"], where)
    gt = GroundTruth({"images": images, "annotations": [], "categories": cats}, where)
    with gc_paused():
        gt.dataset["annotations"] = _check_gt_annotations(data["annotations"], gt)
    return gt


def _check_categories(cats: Any, where: str) -> list[dict]:
    if not cats or not isinstance(cats, list):
        raise fail(where, "the GT has no categories", 'add "categories": [{"id": 1, "name": "car"}, ...]')
    out, seen = [], {}
    for k, c in enumerate(cats):
        if not isinstance(c, dict):
            raise fail(
                where, f"category #{k} is {_short(c)}, not an object", 'write {"id": 1, "name": "car"}'
            )
        cid = _int_id(c.get("id"))
        if cid is None:
            raise fail(
                where, f"category #{k} has id {_short(c.get('id'))}, not an integer", "write ids as integers"
            )
        if cid in seen:
            raise fail(
                where,
                f"category id {cid} appears twice (#{seen[cid]} and #{k})",
                "give every category its own id",
            )
        if type(c.get("name", "")) not in (str, int):
            raise fail(
                where, f"category id {cid} has name {_short(c['name'])}", "category names must be strings"
            )
        seen[cid] = k
        out.append({**c, "id": cid})
    return out


def _check_images(images: list, where: str) -> list[dict]:
    out, seen = [], set()
    for k, img in enumerate(images):
        if not isinstance(img, dict):
            raise fail(
                where,
                f"image #{k} is {_short(img)}, not an object",
                'give each image as {"id", "file_name", "height", "width"}',
            )
        iid = _int_id(img.get("id"))
        if iid is None or iid in seen:
            raise fail(
                where,
                f"image ids must be unique integers (image #{k} has id {_short(img.get('id'))})",
                "fix the 'images' list",
            )
        seen.add(iid)
        img = {**img, "id": iid}
        if "height" in img or "width" in img:
            img["height"], img["width"] = _checked_size(img, iid, where)
        out.append(img)
    return out


def _checked_size(img: Mapping, iid: int, where: str) -> tuple[int, int]:
    h, w = img.get("height"), img.get("width")
    if not (_is_number(h) and _is_number(w) and 1 <= h < math.inf and 1 <= w < math.inf):
        raise fail(
            where,
            f"image id {iid} has no valid height/width ({_short(h)} x {_short(w)})",
            "add them to its 'images' entry",
        )
    h, w = int(round(h)), int(round(w))
    if h * w > MAX_IMAGE_PIXELS:
        raise fail(
            where,
            f"image id {iid} is {_short(w)}x{_short(h)} (WxH), larger than any image Detectron2 can read "
            f"({MAX_IMAGE_PIXELS} pixels)",
            "fix its height/width",
        )
    return h, w


def _limits(images: list[dict]) -> tuple[dict[int, list[int] | None], dict[int, float]]:
    """image id -> [height, width] or None, and -> the largest coordinate magnitude accepted."""
    sizes = {img["id"]: [img["height"], img["width"]] if "height" in img else None for img in images}
    limits = {i: COORD_FACTOR * float(max(hw) if hw else _SIDE_WITHOUT_SIZE) for i, hw in sizes.items()}
    return sizes, limits


def _check_gt_annotations(raw: list, gt: GroundTruth) -> list[dict]:
    where, cat_ids, images = gt.source, set(gt.cat_ids), gt.images
    sizes, limits = _limits(gt.dataset["images"])
    anns, box_at, rle_at, rle_counts, rle_areas = [], [], [], [], []
    for i, a in enumerate(raw):
        a = _check_gt_annotation(a, i, where, limits, cat_ids)
        if "bbox" in a:
            box_at.append(i)
        segm = a.get("segmentation")
        if isinstance(segm, dict):
            h, w = sizes[a["image_id"]] or image_size(images[a["image_id"]], where)
            item = f"annotation #{i} (image {a['image_id']})"
            a["segmentation"] = segm = _check_gt_rle(segm, h, w, item, where)
            if type(segm["counts"]) is str:
                rle_at.append(i)
                rle_counts.append(segm["counts"])
                rle_areas.append(segm["size"][0] * segm["size"][1])
        anns.append(a)
    _check_gt_boxes(anns, box_at, limits, where)
    k, problem = _first_bad_rle(rle_counts, rle_areas)
    if k >= 0:
        i = rle_at[k]
        raise fail(where, f"annotation #{i} (image {anns[i]['image_id']}): {problem}", "fix or remove it")
    fixed = {"id": 0, "area": 0, "bbox": 0, "iscrowd": 0}
    for i, a in enumerate(anns):
        if "iscrowd" not in a:
            a["iscrowd"], fixed["iscrowd"] = 0, fixed["iscrowd"] + 1
        if "area" not in a or "bbox" not in a:
            _fill_area_bbox(a, images[a["image_id"]], where, i, fixed)
    ids = [a.get("id") for a in anns]
    if any(type(x) is not int or not 0 < x < _MAX_ID for x in ids) or len(set(ids)) != len(ids):
        for n, a in enumerate(anns, start=1):
            a["id"] = n
        fixed["id"] = len(anns)
    _warn_fixes(gt, fixed)
    return anns


def _check_gt_boxes(anns: list[dict], box_at: list[int], limits: Mapping[int, float], where: str) -> None:
    boxes, box_limits = [anns[i]["bbox"] for i in box_at], [limits[anns[i]["image_id"]] for i in box_at]
    k, problem = _first_bad_box(boxes, box_limits)
    if k < 0:
        return
    i = box_at[k]
    item, box = f"annotation #{i} (image {anns[i]['image_id']})", _short(anns[i]["bbox"])
    if problem == "shape":
        raise fail(
            where,
            f"{item}: bbox {box} is not [x, y, width, height] (finite numbers, width and height >= 0)",
            "fix or remove it",
        )
    raise fail(
        where,
        f"{item}: bbox {box} lies more than {COORD_FACTOR}x the image size outside the image",
        "boxes are [x, y, width, height] in pixels of the image: fix or remove it",
    )


def _check_gt_annotation(a: Any, i: int, where: str, limits: Mapping[int, float], cat_ids: set) -> dict:
    """One GT annotation: ids, iscrowd, area and polygons checked (boxes and RLE counts later, in one batch);
    -> a copy with only the COCO keys (the backends act on others, e.g. 'ignore')."""
    if not isinstance(a, dict):
        raise fail(where, f"annotation #{i} is {_short(a)}, not an object", "fix or remove it")
    img_id, cat_id = a.get("image_id"), a.get("category_id")
    if type(img_id) is not int or type(cat_id) is not int:
        if img_id is not None and _int_id(img_id) is None:
            raise fail(
                where,
                f"annotation #{i} has image_id {_short(img_id)}, not an integer",
                "write ids as integers",
            )
        img_id, cat_id = _int_id(img_id), _int_id(cat_id)
    if img_id not in limits:
        raise fail(
            where,
            f"annotation #{i} refers to image id {_short(a.get('image_id'))} which is not in 'images'",
            "fix or remove it",
        )
    if cat_id not in cat_ids:
        raise fail(
            where,
            f"annotation #{i} (image {img_id}) has category_id {_short(a.get('category_id'))}, "
            f"not in categories {sorted(cat_ids)[:20]}",
            "fix its category_id or add the category",
        )
    out = dict(a) if a.keys() <= _GT_KEY_SET else {k: a[k] for k in _GT_KEYS if k in a}
    out["image_id"], out["category_id"] = img_id, cat_id
    crowd = out.get("iscrowd", 0)
    if type(crowd) not in (int, bool, float) or crowd not in (0, 1):
        raise fail(
            where, f"annotation #{i} (image {img_id}): iscrowd is {_short(crowd)}, expected 0 or 1", "fix it"
        )
    if type(crowd) is not int:
        out["iscrowd"] = int(crowd)
    if "area" in out and not (type(out["area"]) in _NUMBER_TYPES and 0 <= out["area"] <= _MAX_AREA):
        raise fail(
            where,
            f"annotation #{i} (image {img_id}): area is {_short(out['area'])}, expected a number >= 0",
            "fix it, or remove 'area' to have it computed from the mask",
        )
    if "bbox" in out and type(out["bbox"]) not in (list, tuple):
        raise fail(
            where,
            f"annotation #{i} (image {img_id}): bbox {_short(out['bbox'])} is not [x, y, width, height]",
            "fix or remove it",
        )
    segm = out.get("segmentation")
    if segm is not None and type(segm) is not dict and segm != []:
        problem = _polygon_problem(segm, limits[img_id])
        if problem is None:
            raise fail(
                where,
                f"annotation #{i} (image {img_id}): segmentation is neither polygons (lists of >= 6 numbers) "
                "nor RLE",
                "fix or remove it",
            )
        if problem:
            raise fail(where, f"annotation #{i} (image {img_id}): {problem}", "fix or remove it")
    return out


def _check_gt_rle(segm: dict, h: int, w: int, item: str, where: str) -> dict:
    problem = _rle_problem(segm, h, w)
    if problem:
        raise fail(where, f"{item}: {problem}", "fix or remove it")
    counts = segm["counts"]
    if type(counts) is not list:
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": [h, w], "counts": counts}


def _fill_area_bbox(a: dict, img: Mapping, where: str, i: int, fixed: dict) -> None:
    segm = a.get("segmentation")
    rle = None
    if isinstance(segm, dict) and isinstance(segm["counts"], str):  # frPyObjects reads dicts as uncompressed
        rle = segm
    elif segm:
        h, w = image_size(img, where)
        rle = mask_util.frPyObjects(segm, h, w)
        rle = mask_util.merge(rle) if isinstance(rle, list) else rle
    if "bbox" not in a:
        if rle is None:
            raise fail(
                where,
                f"annotation #{i} (image {a['image_id']}) has neither bbox nor segmentation",
                "remove it",
            )
        a["bbox"], fixed["bbox"] = [float(v) for v in mask_util.toBbox(rle)], fixed["bbox"] + 1
    if "area" not in a:
        a["area"] = float(mask_util.area(rle)) if rle is not None else float(a["bbox"][2] * a["bbox"][3])
        fixed["area"] += 1


def _warn_fixes(gt: GroundTruth, fixed: Mapping[str, int]) -> None:
    texts = {
        "id": "annotation ids renumbered 1..N (ids were missing, 0, duplicated or not integers; pycocotools "
        "reads id 0 as 'unmatched')",
        "area": "annotations without 'area': computed from the mask (else the box)",
        "bbox": "annotations without 'bbox': computed from the mask",
        "iscrowd": "annotations without 'iscrowd': set to 0",
    }
    for key, n in fixed.items():
        if n:
            gt.warnings.append(f"{gt.source}: {n} {texts[key]}")
            logger.warning(gt.warnings[-1])


# -------------------------------------------------------------------------------------- predictions


def load_predictions(source: str | Sequence[Mapping], gt: GroundTruth, name: str = "pred") -> Predictions:
    """Read and check COCO results against ``gt``; polygon and uncompressed masks become compressed RLE.

    Errors (one line, exit 2 in tools): not a list, a result without ``image_id``/``category_id``/``score``,
    ids that are not integers or not in the GT, a score that is not a finite number, a malformed box or
    mask (NaN, far outside the image, RLE size different from the image, counts not covering it exactly).
    An empty list is allowed: every metric is then undefined ("no predictions"); so are results for only
    some of the images (the others count as all missed).

    Args:
        source (str or list[dict]): path to the results JSON, or the list (not modified).
        gt (GroundTruth): the ground truth the results were made on.
        name (str): how to call it in messages when ``source`` is a list.

    Returns:
        Predictions: normalized results and the tasks they support.
    """
    where = source if isinstance(source, str) else name
    if isinstance(source, str):
        raw = read_json(source, "results file", "pred=", "give the COCO results JSON that the model wrote")
    else:
        raw = source
    if isinstance(raw, dict) and isinstance(raw.get("annotations"), list):
        raise fail(
            where,
            "this looks like a GT file (it has 'annotations'), not COCO results",
            "give a JSON list of {image_id, category_id, bbox/segmentation, score}",
        )
    if not isinstance(raw, list):
        raise fail(
            where, "COCO results must be a JSON list", "[{image_id, category_id, bbox, segmentation, score}]"
        )
    preds = Predictions([], (), where)
    if not raw:
        preds.warnings.append(f"{where}: no predictions — every metric is undefined ('-')")
        logger.warning(preds.warnings[-1])
        preds.tasks = TASKS
        return preds
    with gc_paused():
        _normalize_all(raw, gt, preds)
    return preds


@dataclass
class _Batch:
    """What the per-result loop leaves for the checks over all results."""

    rle_at: list = field(default_factory=list)  # compressed RLEs to decode: result index,
    rle_counts: list = field(default_factory=list)  # counts string,
    rle_areas: list = field(default_factory=list)  # and height*width of its image
    unknown_images: list = field(default_factory=list)
    unknown_categories: list = field(default_factory=list)
    converted: dict = field(default_factory=lambda: {"polygon": 0, "uncompressed": 0})


def _normalize_all(raw: list, gt: GroundTruth, preds: Predictions) -> None:
    where, cat_ids = preds.source, set(gt.cat_ids)
    sizes, limits = _limits(gt.dataset["images"])
    batch, results = _Batch(), preds.results
    rle_at, rle_counts, rle_areas = batch.rle_at.append, batch.rle_counts.append, batch.rle_areas.append
    for i, r in enumerate(raw):
        try:
            img_id, cat_id, score = r["image_id"], r["category_id"], r["score"]
        except (KeyError, TypeError):
            img_id, cat_id, score = _result_ids(r, i, where)  # raises the precise error
        if type(img_id) is not int or type(cat_id) is not int or type(score) is not float or score - score:
            img_id, cat_id, score = _result_ids(r, i, where)  # converts (1.0, numpy) or raises (NaN, "1")
        if img_id not in sizes or cat_id not in cat_ids:
            (batch.unknown_categories if img_id in sizes else batch.unknown_images).append(
                cat_id if img_id in sizes else img_id
            )
            continue
        box = r.get("bbox")
        if box is not None and type(box) is not list:
            if type(box) is not tuple:
                raise fail(
                    where,
                    f"result #{i}: bbox {_short(box)} is not [x, y, width, height] with width, height >= 0",
                    "write boxes as COCO xywh",
                )
            box = list(box)
        segm = r.get("segmentation")
        if segm is not None:
            hw = sizes[img_id] or image_size(gt.images[img_id], gt.source)
            counts = segm.get("counts") if type(segm) is dict else None
            if type(counts) is str and counts and segm.get("size") == hw and ord(counts[-1]) < 80:
                rle_at(i)  # the usual case: characters and length checked in one batch
                rle_counts(counts)
                rle_areas(hw[0] * hw[1])
                segm = {"size": [*hw], "counts": counts}
            else:
                segm = _normalize_mask(segm, img_id, hw, limits[img_id], where, i, batch)
        results.append(
            {"image_id": img_id, "category_id": cat_id, "score": score, "bbox": box, "segmentation": segm}
        )
    _check_ids(batch, where, sorted(cat_ids))
    n = len(results)
    boxes = [r["bbox"] for r in results]  # built once: counted here, checked in _check_boxes_and_rles
    with_mask = n - [r["segmentation"] for r in results].count(None)
    preds.tasks = _tasks(n, n - boxes.count(None), with_mask, where)
    _check_boxes_and_rles(batch, raw, results, boxes, limits, where)
    for kind, count in batch.converted.items():
        if count:
            preds.warnings.append(f"{where}: {count} {kind} masks converted to compressed RLE")


def _result_ids(r: Any, i: int, where: str) -> tuple[int, int, float]:
    """``(image_id, category_id, score)`` of result #i: ids as int, score a finite float; else the error."""
    if not isinstance(r, dict):
        raise fail(
            where, f"result #{i} is not an object", "each result is {image_id, category_id, ..., score}"
        )
    for key in ("image_id", "category_id", "score"):
        if key not in r:
            raise fail(
                where, f"result #{i} has no '{key}'", "every result needs image_id, category_id and score"
            )
    for key in ("image_id", "category_id"):
        if _int_id(r[key]) is None:
            raise fail(
                where,
                f"result #{i} has {key} {_short(r[key])}, not an integer",
                'write ids as numbers, as in the GT (1, not "1")',
            )
    score = r["score"]
    try:  # numpy scalars (results built in code) are numbers too
        number = isinstance(score, (int, float, np.number)) and not isinstance(score, (bool, np.bool_))
        s = float(score) if number else math.nan
    except OverflowError:
        s = math.inf
    if s - s != 0:  # NaN, infinite, or not a number
        raise fail(where, f"result #{i} has score {_short(score)}", "scores must be finite numbers")
    return _int_id(r["image_id"]), _int_id(r["category_id"]), s


def _check_ids(batch: _Batch, where: str, cat_ids: list[int]) -> None:
    if batch.unknown_images:
        bad = sorted(set(batch.unknown_images))
        raise fail(
            where,
            f"{len(batch.unknown_images)} results refer to image ids not in the GT "
            f"(e.g. {', '.join(map(repr, bad[:5]))})",
            "were the predictions made on this GT file?",
        )
    if batch.unknown_categories:
        bad = sorted(set(batch.unknown_categories))
        raise fail(
            where,
            f"category ids {bad[:10]} are not in the GT categories {cat_ids[:20]}",
            "map model class indices back to dataset ids (Detectron2: thing_dataset_id_to_contiguous_id)",
        )


def _check_boxes_and_rles(
    batch: _Batch, raw: list, results: list[dict], boxes: list, limits: Mapping[int, float], where: str
) -> None:
    """Boxes (every result has one, or none) and compressed RLE counts of all results, vectorised."""
    if results and results[0]["bbox"] is not None:
        lims = [limits[r["image_id"]] for r in results]
        i, problem = _first_bad_box(boxes, lims)
        if problem == "shape":
            raise fail(
                where,
                f"result #{i}: bbox {_short(raw[i]['bbox'])} is not [x, y, width, height] with width, "
                "height >= 0",
                "write boxes as COCO xywh",
            )
        if problem:
            raise fail(
                where,
                f"result #{i} (image {results[i]['image_id']}): bbox {_short(raw[i]['bbox'])} lies more than "
                f"{COORD_FACTOR}x the image size outside the image",
                "boxes are COCO [x, y, width, height] in pixels of the GT image",
            )
    k, problem = _first_bad_rle(batch.rle_counts, batch.rle_areas)
    if k >= 0:
        i = batch.rle_at[k]
        raise fail(
            where,
            f"result #{i} (image {results[i]['image_id']}): malformed mask: {problem}",
            "encode masks with pycocotools.mask.encode(np.asfortranarray(mask))",
        )


def _normalize_mask(
    segm: Any, img_id: int, hw: Sequence[int], limit: float, where: str, i: int, batch: _Batch
) -> dict:
    """A mask other than the usual compressed RLE of the right size (polygons, uncompressed RLE, bytes)."""
    h, w = hw
    if isinstance(segm, list):
        problem = _polygon_problem(segm, limit)
        if problem is None:
            raise fail(
                where,
                f"result #{i} (image {img_id}): polygon mask needs lists of >= 6 numbers",
                "write masks as RLE or [[x1, y1, x2, y2, x3, y3, ...]]",
            )
        if problem:
            raise fail(
                where,
                f"result #{i} (image {img_id}): {problem}",
                "masks are RLE or polygons in pixels of the GT image",
            )
        rle, batch.converted["polygon"] = (
            mask_util.merge(mask_util.frPyObjects(segm, h, w)),
            batch.converted["polygon"] + 1,
        )
    elif isinstance(segm, dict):
        problem = _rle_problem(segm, h, w)
        if problem:
            raise fail(
                where,
                f"result #{i} (image {img_id}): malformed mask: {problem}",
                "encode masks with pycocotools.mask.encode(np.asfortranarray(mask))",
            )
        if not isinstance(segm["counts"], list):
            counts = segm["counts"]
            counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
            batch.rle_at.append(i)
            batch.rle_counts.append(counts)
            batch.rle_areas.append(h * w)
            return {"size": [h, w], "counts": counts}
        rle, batch.converted["uncompressed"] = (
            mask_util.frPyObjects({"size": [h, w], "counts": segm["counts"]}, h, w),
            batch.converted["uncompressed"] + 1,
        )
    else:
        raise fail(
            where, f"result #{i}: segmentation is neither RLE nor polygons", "see the COCO results format"
        )
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _tasks(n: int, has_box: int, has_mask: int, where: str) -> tuple[str, ...]:
    for key, have in (("bbox", has_box), ("segmentation", has_mask)):
        if 0 < have < n:
            raise fail(
                where,
                f"{n - have} of {n} results have no '{key}' while the others do",
                f"give every result a {key} (or none)",
            )
    tasks = tuple(t for t, have in (("bbox", has_box), ("segm", has_mask)) if have)
    if not tasks:
        raise fail(where, "results have neither 'bbox' nor 'segmentation'", "see the COCO results format")
    return tasks
