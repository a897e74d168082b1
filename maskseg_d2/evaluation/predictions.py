"""Predictions of a COCO evaluation: COCO results read, checked against the ground truth and normalized.

What is checked and why: :mod:`maskseg_d2.evaluation.coco_checks`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_util

from ..data.jsonio import read_json
from ..errors import fail
from .coco_checks import (
    COORD_FACTOR,
    TASKS,
    _first_bad_box,
    _first_bad_rle,
    _int_id,
    _limits,
    _polygon_problem,
    _rle_problem,
    _short,
    gc_paused,
)
from .ground_truth import GroundTruth, image_size

__all__ = ["Predictions", "load_predictions"]

logger = logging.getLogger(__name__)


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
