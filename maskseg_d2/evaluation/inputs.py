"""Checked inputs of a COCO evaluation: ground truth and results, read, validated, normalized.

Anything pycocotools would crash on (empty results, polygons in results, a GT without categories) or silently
mis-count (annotation id 0, predictions for unknown ids) becomes a one-line
:class:`~maskseg_d2.errors.UserError` or a counted warning that the report shows.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from pycocotools import mask as mask_util

from ..errors import fail

__all__ = [
    "TASKS",
    "GroundTruth",
    "Predictions",
    "load_ground_truth",
    "load_predictions",
    "gc_paused",
    "image_size",
]

logger = logging.getLogger(__name__)

TASKS = ("bbox", "segm")
_RLE_CHARS = re.compile(r"[^0-o]")  # pycocotools' compressed counts use chars '0' (48) .. 'o' (111)


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
        dataset (dict): ``images``, ``annotations`` (ids >= 1, ``area``, ``iscrowd`` filled), ``categories``.
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


def _read_json(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise fail(path, f"{what} file not found", "check the path")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise fail(path, f"not valid JSON ({e})", f"give a COCO {what} JSON file") from None


_NUMBER_TYPES = frozenset({int, float})  # exact types: JSON gives int/float; bool is not a number here


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER_TYPES and v == v  # NaN != NaN


def _valid_polygons(segm: Any) -> bool:
    # set(map(type, ...)) iterates in C: ~50x faster than a Python-level check on 1M+ coordinates
    return (
        type(segm) is list
        and len(segm) > 0
        and all(
            type(p) is list and len(p) >= 6 and len(p) % 2 == 0 and set(map(type, p)) <= _NUMBER_TYPES
            for p in segm
        )
    )


def _rle_problem(segm: Mapping, h: int, w: int) -> str:
    """'' when ``segm`` is a usable RLE for an h x w image, else what is wrong with it."""
    size, counts = segm.get("size"), segm.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        return "RLE without 'size': [height, width]"
    if [int(size[0]), int(size[1])] != [h, w]:
        return f"RLE size {list(size)} differs from the image size [{h}, {w}] in the GT"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
            return f"uncompressed RLE counts must be non-negative ints summing to height*width = {h * w}"
        return ""
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if (
        not isinstance(counts, str)
        or not counts
        or _RLE_CHARS.search(counts)
        or (ord(counts[-1]) - 48) & 0x20
    ):
        return "compressed RLE counts are not a pycocotools string (chars '0'..'o')"
    return ""


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

    Repairs (each counted in ``warnings``): annotation ids that are missing, 0 or duplicated are renumbered
    1..N (pycocotools treats id 0 as "unmatched", silently counting a hit as a miss); a missing ``iscrowd``
    is 0; a missing ``area`` is the mask area (else the box area); a missing ``bbox`` comes from the mask.

    Args:
        source (str or dict): path to the JSON file, or the loaded dict (not modified).
        name (str): how to call it in messages when ``source`` is a dict.

    Returns:
        GroundTruth: the checked dataset.
    """
    where = source if isinstance(source, str) else name
    data = _read_json(source, "ground truth") if isinstance(source, str) else source
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise fail(
            where,
            "not a COCO instances file (no 'images' list)",
            "give the annotation JSON with images/annotations/categories",
        )
    cats = data.get("categories")
    if not cats or not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c for c in cats):
        raise fail(where, "the GT has no categories", 'add "categories": [{"id": 1, "name": "car"}, ...]')
    if not isinstance(data.get("annotations"), list):
        raise fail(
            where, "the GT has no 'annotations' list (a test-set file?)", "give the file with annotations"
        )
    images = [dict(img) for img in data["images"]]
    img_ids = {img.get("id") for img in images}
    if len(img_ids) != len(images) or not all(isinstance(i, int) for i in img_ids):
        raise fail(where, "image ids must be unique integers", "fix the 'images' list")
    gt = GroundTruth({"images": images, "annotations": [], "categories": [dict(c) for c in cats]}, where)
    with gc_paused():
        gt.dataset["annotations"] = _check_gt_annotations(data["annotations"], gt, img_ids)
    return gt


def _check_gt_annotations(raw: list, gt: GroundTruth, img_ids: set) -> list[dict]:
    where, cat_ids, images = gt.source, set(gt.cat_ids), gt.images
    anns, fixed = [], {"id": 0, "area": 0, "bbox": 0, "iscrowd": 0}
    for i, a in enumerate(raw):
        if not isinstance(a, dict) or a.get("image_id") not in img_ids:
            raise fail(
                where,
                f"annotation #{i} refers to image id {a.get('image_id') if isinstance(a, dict) else a!r}"
                " which is not in 'images'",
                "fix or remove it",
            )
        if a.get("category_id") not in cat_ids:
            raise fail(
                where,
                f"annotation #{i} (image {a['image_id']}) has category_id {a.get('category_id')!r}, "
                f"not in categories {sorted(cat_ids)}",
                "fix its category_id or add the category",
            )
        a = dict(a)
        if "bbox" in a and not _box_ok(a["bbox"]):
            raise fail(
                where,
                f"annotation #{i} (image {a['image_id']}): bbox {a['bbox']!r} is not [x, y, width, height]",
                "fix or remove it",
            )
        if "iscrowd" not in a:
            a["iscrowd"], fixed["iscrowd"] = 0, fixed["iscrowd"] + 1
        segm = a.get("segmentation")
        if isinstance(segm, dict):
            h, w = image_size(images[a["image_id"]], where)
            problem = _rle_problem(segm, h, w)
            if problem:
                raise fail(where, f"annotation #{i} (image {a['image_id']}): {problem}", "fix or remove it")
        elif segm is not None and not (_valid_polygons(segm) or segm == []):
            raise fail(
                where,
                f"annotation #{i} (image {a['image_id']}): segmentation is neither polygons "
                "(lists of >= 6 numbers) nor RLE",
                "fix or remove it",
            )
        if "area" not in a or "bbox" not in a:
            _fill_area_bbox(a, images[a["image_id"]], where, i, fixed)
        anns.append(a)
    ids = [a.get("id") for a in anns]
    if any(not isinstance(x, int) or x <= 0 for x in ids) or len(set(ids)) != len(ids):
        for n, a in enumerate(anns, start=1):
            a["id"] = n
        fixed["id"] = len(anns)
    _warn_fixes(gt, fixed)
    return anns


def _fill_area_bbox(a: dict, img: Mapping, where: str, i: int, fixed: dict) -> None:
    segm = a.get("segmentation")
    rle = None
    if segm:
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
        "id": "annotation ids renumbered 1..N (ids were missing, 0 or duplicated; pycocotools reads id 0 "
        "as 'unmatched')",
        "area": "annotations without 'area': computed from the mask (else the box)",
        "bbox": "annotations without 'bbox': computed from the mask",
        "iscrowd": "annotations without 'iscrowd': set to 0",
    }
    for key, n in fixed.items():
        if n:
            gt.warnings.append(f"{gt.source}: {n} {texts[key]}")
            logger.warning(gt.warnings[-1])


def load_predictions(source: str | Sequence[Mapping], gt: GroundTruth, name: str = "pred") -> Predictions:
    """Read and check COCO results against ``gt``; polygon and uncompressed masks become compressed RLE.

    Errors (one line, exit 2 in tools): not a list, a result without ``image_id``/``category_id``/``score``,
    an image id or category id that is not in the GT, a malformed box or mask (RLE size different from the
    image, bad counts). An empty list is allowed: every metric is then undefined ("no predictions").

    Args:
        source (str or list[dict]): path to the results JSON, or the list (not modified).
        gt (GroundTruth): the ground truth the results were made on.
        name (str): how to call it in messages when ``source`` is a list.

    Returns:
        Predictions: normalized results and the tasks they support.
    """
    where = source if isinstance(source, str) else name
    raw = _read_json(source, "results") if isinstance(source, str) else source
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
    _check_ids(raw, gt, where)
    with gc_paused():
        _normalize_all(raw, gt, preds)
    return preds


def _normalize_all(raw: list, gt: GroundTruth, preds: Predictions) -> None:
    where, images, sizes, converted = preds.source, gt.images, {}, {"polygon": 0, "uncompressed": 0}
    has_box = has_mask = 0
    for i, r in enumerate(raw):
        img_id = r["image_id"]
        out = {
            "image_id": img_id,
            "category_id": r["category_id"],
            "score": float(r["score"]),
            "bbox": _check_box(r.get("bbox"), where, i),
            "segmentation": None,
        }
        if r.get("segmentation") is not None:
            hw = sizes.get(img_id) or sizes.setdefault(img_id, image_size(images[img_id], gt.source))
            out["segmentation"] = _normalize_mask(r["segmentation"], img_id, hw, where, i, converted)
        has_box += out["bbox"] is not None
        has_mask += out["segmentation"] is not None
        preds.results.append(out)
    preds.tasks = _tasks(len(raw), has_box, has_mask, where)
    _check_rle_chars(preds.results, where)
    for kind, n in converted.items():
        if n:
            preds.warnings.append(f"{where}: {n} {kind} masks converted to compressed RLE")


def _check_ids(raw: list, gt: GroundTruth, where: str) -> None:
    img_ids, cat_ids = set(gt.images), set(gt.cat_ids)
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise fail(
                where, f"result #{i} is not an object", "each result is {image_id, category_id, ..., score}"
            )
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise fail(
                    where, f"result #{i} has no '{key}'", "every result needs image_id, category_id and score"
                )
        if not _is_number(r["score"]):
            raise fail(where, f"result #{i} has score {r['score']!r}", "scores must be numbers")
    bad_img = sorted({r["image_id"] for r in raw} - img_ids, key=str)
    if bad_img:
        raise fail(
            where,
            f"{sum(r['image_id'] in bad_img for r in raw)} results refer to image ids not in the GT "
            f"(e.g. {', '.join(map(repr, bad_img[:5]))})",
            "were the predictions made on this GT file?",
        )
    bad_cat = sorted({r["category_id"] for r in raw} - cat_ids, key=str)
    if bad_cat:
        raise fail(
            where,
            f"category ids {bad_cat[:10]} are not in the GT categories {sorted(cat_ids)[:20]}",
            "map model class indices back to dataset ids (Detectron2: thing_dataset_id_to_contiguous_id)",
        )


def _box_ok(box: Any) -> bool:
    return (
        isinstance(box, (list, tuple))
        and len(box) == 4
        and all(map(_is_number, box))
        and box[2] >= 0
        and box[3] >= 0
    )


def _check_box(box: Any, where: str, i: int) -> list | None:
    if box is None:
        return None
    if not _box_ok(box):
        raise fail(
            where,
            f"result #{i}: bbox {box!r} is not [x, y, width, height] with width, height >= 0",
            "write boxes as COCO xywh",
        )
    return list(box)


def _normalize_mask(segm: Any, img_id: int, hw: tuple[int, int], where: str, i: int, converted: dict) -> dict:
    h, w = hw
    if type(segm) is dict:
        counts = segm.get("counts")
        if (
            type(counts) is str
            and counts
            and segm.get("size") == [h, w]
            and not (ord(counts[-1]) - 48) & 0x20
        ):
            return {"size": [h, w], "counts": counts}  # the usual case; characters are checked in one batch
    if isinstance(segm, list):
        if not _valid_polygons(segm):
            raise fail(
                where,
                f"result #{i} (image {img_id}): polygon mask needs lists of >= 6 numbers",
                "write masks as RLE or [[x1, y1, x2, y2, x3, y3, ...]]",
            )
        rle, converted["polygon"] = (
            mask_util.merge(mask_util.frPyObjects(segm, h, w)),
            converted["polygon"] + 1,
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
            return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
        rle, converted["uncompressed"] = (
            mask_util.frPyObjects(dict(segm), h, w),
            converted["uncompressed"] + 1,
        )
    else:
        raise fail(
            where, f"result #{i}: segmentation is neither RLE nor polygons", "see the COCO results format"
        )
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _check_rle_chars(results: list[dict], where: str) -> None:
    # one regex over all counts strings instead of 100k small searches; the offender is found only on error
    if _RLE_CHARS.search("".join(r["segmentation"]["counts"] for r in results if r["segmentation"])):
        for i, r in enumerate(results):
            if r["segmentation"] and _RLE_CHARS.search(r["segmentation"]["counts"]):
                raise fail(
                    where,
                    f"result #{i} (image {r['image_id']}): malformed mask: compressed RLE counts are "
                    "not a pycocotools string (chars '0'..'o')",
                    "encode masks with pycocotools.mask.encode(np.asfortranarray(mask))",
                )


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
