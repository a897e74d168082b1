"""Ground truth of a COCO evaluation: a COCO instances file (or dict) read, checked and repaired.

What is checked and why: :mod:`maskseg_d2.evaluation.coco_checks`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from pycocotools import mask as mask_util

from ..data.images import MAX_IMAGE_PIXELS
from ..data.jsonio import read_json
from ..errors import UserError, fail
from .coco_checks import (
    _MAX_AREA,
    _MAX_ID,
    _NUMBER_TYPES,
    COORD_FACTOR,
    _first_bad_box,
    _first_bad_rle,
    _int_id,
    _is_number,
    _limits,
    _polygon_problem,
    _rle_problem,
    _short,
    gc_paused,
)

__all__ = ["GroundTruth", "load_ground_truth", "image_size"]

logger = logging.getLogger(__name__)
_GT_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")
_GT_KEY_SET = frozenset(_GT_KEYS)


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
