"""Any supported export -> one standard COCO instances JSON (what ``tools/convert.py`` runs).

The output: ``images`` (ids from 1, sorted by path; ``file_name`` relative to the image root with
``/`` separators; ``width``/``height`` as Detectron2 reads the image, EXIF applied), ``annotations``
(ids from 1; polygons as lists of flat ``[x1, y1, ...]`` lists or compressed RLE with ``counts`` as
str; ``bbox`` [x, y, w, h]; ``area`` = mask pixel area as pycocotools computes it; ``iscrowd``) and
``categories`` (ids from 1, in class-list order). Loading it back with
:func:`~maskseg_d2.data.formats.load_dataset` or Detectron2's ``load_coco_json`` gives the same instances.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_util

from ..errors import fail
from ..utils.fileio import atomic_write_text
from .dataset_report import write_report
from .formats import read_dataset
from .labelstudio_api import pull_inputs
from .loading import ON_ERROR_POLICIES, LoadResult

__all__ = ["to_coco", "convert", "ConvertSummary", "relative_file_name"]

logger = logging.getLogger(__name__)

_DECIMALS = 2  # 0.01 px: far below annotation precision, and halves the file size


@dataclass
class ConvertSummary:
    """What :func:`convert` did.

    Attributes:
        output (str or None): the COCO file written (None when only a report was asked for).
        num_images (int): images written.
        num_annotations (int): instances written.
        thing_classes (list[str]): categories 1..K.
        format (str): the input format(s).
        skipped (dict[str, int]): skipped items by reason.
        adjusted (dict[str, int]): adjusted items by reason.
        report (dict or None): the validation report summary, when asked for.
        invalid (int): invalid items left out (``on_error="skip"``; also counted in ``skipped``).
    """

    output: str | None
    num_images: int
    num_annotations: int
    thing_classes: list[str]
    format: str
    skipped: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)
    report: dict | None = None
    invalid: int = 0


def relative_file_name(file_name: str, image_root: str | os.PathLike) -> str:
    """``file_name`` relative to ``image_root`` with ``/`` separators; an error when it is outside.

    Args:
        file_name (str): absolute image path (as the loaders return it).
        image_root (str or PathLike): the image folder.

    Returns:
        str: the relative POSIX path.
    """
    try:
        return Path(os.path.abspath(file_name)).relative_to(os.path.abspath(image_root)).as_posix()
    except ValueError:
        raise fail(file_name, f"the image is outside the image folder {image_root}",
                   "pass an --image-root that contains every image") from None


def _round(values: Sequence[float]) -> list[float]:
    return [round(float(v), _DECIMALS) for v in values]


def _segmentation_and_area(seg: Any, height: int, width: int) -> tuple[Any, float]:
    if isinstance(seg, dict):
        rle = {"size": list(seg["size"]), "counts": seg["counts"]}
        area = float(mask_util.area({"size": rle["size"], "counts": str(rle["counts"]).encode("ascii")}))
        return rle, area
    polys = [_round(p) for p in seg]
    area = float(mask_util.area(mask_util.merge(mask_util.frPyObjects(polys, height, width))))
    return polys, area


def to_coco(result: LoadResult, image_root: str | os.PathLike, description: str = "") -> dict:
    """Build a COCO instances document from loaded dataset dicts.

    Args:
        result (LoadResult): what :func:`~maskseg_d2.data.formats.read_dataset` returned.
        image_root (str or PathLike): ``file_name`` becomes relative to it.
        description (str): written to ``info.description``.

    Returns:
        dict: ``info``, ``licenses``, ``images``, ``annotations``, ``categories``.
    """
    images, annotations = [], []
    records = sorted(((relative_file_name(d["file_name"], image_root), d) for d in result.dicts),
                     key=lambda rd: rd[0])
    for (rel, a), (rel2, b) in zip(records, records[1:]):
        if rel == rel2:
            raise fail(rel, f"the image is annotated twice (items {a['image_id']} and {b['image_id']})",
                       "keep one annotation file per image (or remove the duplicate input)")
    for image_id, (rel, d) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": rel, "width": int(d["width"]),
                       "height": int(d["height"])})
        for ann in d["annotations"]:
            seg, area = _segmentation_and_area(ann["segmentation"], d["height"], d["width"])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(ann["category_id"]) + 1,
                "segmentation": seg, "area": area, "bbox": _round(ann["bbox"]),
                "iscrowd": int(ann.get("iscrowd", 0)),
            })
    categories = [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(result.thing_classes)]
    info = {"description": description, "version": "1.0", "contributor": "maskseg-d2 tools/convert.py"}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": categories}


def _write_json(doc: dict, output: str | os.PathLike) -> None:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    # never a half-written file where a training run would read it
    atomic_write_text(out, json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def convert(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike | None,
    image_root: str | os.PathLike | None = None,
    fmt: str = "auto",
    classes: list[str] | None = None,
    class_map: dict[str, Any] | None = None,
    unknown: str = "error",
    report_dir: str | os.PathLike | None = None,
    on_error: str = "error",
) -> ConvertSummary:
    """Read any supported export(s) and write one COCO instances JSON (and optionally a report).

    With ``report_dir``, the inputs are read leniently (every invalid item is collected rather than
    the first one raised) and :func:`~maskseg_d2.data.dataset_report.write_report` writes the validation
    report there; if any item was invalid, no COCO file is written and a one-line error points to
    the report -- unless ``on_error="skip"``: invalid items (a bad region, image, task or whole file)
    are then left out, counted in ``ConvertSummary.skipped`` / ``invalid``, and the valid rest is written.

    Args:
        inputs (str, PathLike or list): export file(s) or LabelMe folder(s).
        output (str, PathLike or None): the COCO file to write (None: report only).
        image_root (str, PathLike or None): the photos; ``file_name`` is relative to it (needed by the
            Label Studio and COCO formats; LabelMe default: the images' common folder).
        fmt (str): ``auto`` or a format of :data:`~maskseg_d2.data.formats.FORMATS`.
        classes (list[str] or None): class names (categories 1..K in this order); None discovers them.
        class_map (dict or None): raw label -> class name (to null: drop the label).
        unknown (str): ``"error"`` or ``"skip"`` for labels outside ``classes``.
        report_dir (str, PathLike or None): where to write the validation report.
        on_error (str): ``"error"`` (the first invalid item stops it, one line) or ``"skip"``.

    Returns:
        ConvertSummary: counts, classes and (with a report) its summary.
    """
    if on_error not in ON_ERROR_POLICIES:
        raise fail(f"on_error={on_error}", "unknown policy", f"use one of {', '.join(ON_ERROR_POLICIES)}")
    paths = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(i) for i in inputs]
    paths, image_root = pull_inputs(paths, image_root, on_error)  # a Label Studio project URL
    strict = report_dir is None and on_error == "error"
    result = read_dataset(paths, image_root, fmt, classes=classes, class_map=class_map, unknown=unknown, strict=strict,
                          syntax="argparse")  # the library of tools/convert.py: its errors name its options
    if not result.dicts and (on_error == "skip" or not result.problems):
        first = f" ({len(result.problems)} invalid item(s) skipped, e.g. {result.problems[0][1]})" \
            if result.problems else ""
        raise fail(", ".join(paths), f"no labelled image{first}", "annotate some images and export again")
    if image_root is None:  # LabelMe finds its images itself: write paths relative to their common folder
        folders = [os.path.dirname(os.path.abspath(d["file_name"])) for d in result.dicts]
        image_root = os.path.commonpath(folders) if folders else os.getcwd()
    summary = ConvertSummary(None, len(result.dicts), sum(len(d["annotations"]) for d in result.dicts),
                             list(result.thing_classes), result.format, dict(result.skipped),
                             dict(result.adjusted), invalid=len(result.problems))
    if report_dir is not None:
        summary.report = write_report(result, report_dir)
        if result.problems and on_error == "error":
            first = result.problems[0][1]
            listed = Path(report_dir) / "report.md"
            raise fail(str(report_dir), f"{len(result.problems)} invalid item(s), e.g. {first}",
                       f"fix them (all are listed in {listed}); no COCO file was written")
    if output is not None:
        doc = to_coco(result, image_root, description=f"converted from {', '.join(paths)}")
        _write_json(doc, output)
        summary.output = str(output)
        logger.info("Wrote %s: %d images, %d annotations, categories %s", output, len(doc["images"]),
                    len(doc["annotations"]), result.thing_classes)
    return summary
