"""The public importer: :func:`load_dataset` reads any supported export (several files at once) into
Detectron2 dataset dicts, :func:`read_dataset` also returns the classes and counts; format detection.

Formats: ``labelstudio`` (Label Studio JSON export), ``labelstudio_min`` (JSON_MIN),
``labelstudio_coco`` (Label Studio's COCO export), ``coco`` (any COCO instances JSON) and ``labelme``
(a folder of LabelMe files, or the files). ``auto`` tells them apart by content:

=====================================================  ===================
content                                                format
=====================================================  ===================
a folder, or a dict with ``shapes``                    labelme
a list of tasks (``data`` / ``annotations``)           labelstudio
a list of records with ``annotation_id``, no ``data``  labelstudio_min
a dict with ``images`` + ``annotations``               coco (``labelstudio_coco`` when
                                                       ``info.contributor`` is Label Studio)
=====================================================  ===================

An explicit format is checked against the content: ``labelstudio`` accepts any of Label Studio's
three exports and ``coco`` either COCO flavour; anything else that disagrees is a one-line error.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError, fail
from .coco import coco_dicts, is_coco, is_labelstudio_coco
from .jsonio import read_json
from .labelme import labelme_dicts, labelme_files
from .labelstudio import tasks_to_dicts
from .labelstudio_min import is_json_min, min_records_to_tasks
from .loading import ClassMapper, LoadResult, LoadStats, finish_load

__all__ = ["FORMATS", "DESCRIPTIONS", "detect_format", "detect_doc_format", "load_dataset", "read_dataset"]

logger = logging.getLogger(__name__)

DESCRIPTIONS = {
    "labelstudio": "Label Studio JSON export",
    "labelstudio_min": "Label Studio JSON_MIN export",
    "labelstudio_coco": "Label Studio COCO export",
    "coco": "COCO instances file",
    "labelme": "LabelMe annotation",
}
FORMATS = ("auto", *DESCRIPTIONS)
_ACCEPTS = {  # explicit format -> detected formats it loads
    "labelstudio": ("labelstudio", "labelstudio_min", "labelstudio_coco"),
    "labelstudio_min": ("labelstudio_min",),
    "labelstudio_coco": ("labelstudio_coco", "coco"),  # explicit: Label Studio's quirks even without info
    "coco": ("coco", "labelstudio_coco"),
    "labelme": ("labelme",),
}


def detect_doc_format(doc: Any, source: str) -> str:
    """Tell the format of a parsed annotation file (see the module table).

    Args:
        doc: the parsed JSON.
        source (str): the file, named in the error.

    Returns:
        str: one of the keys of :data:`DESCRIPTIONS`.
    """
    if isinstance(doc, list):
        first = next((x for x in doc if isinstance(x, dict)), None)
        if first is None or {"data", "annotations", "completions", "predictions"} & set(first):
            return "labelstudio"  # an empty list too: the JSON export of a project without tasks
        if is_json_min(doc):
            return "labelstudio_min"
    elif isinstance(doc, dict):
        if is_labelstudio_coco(doc):
            return "labelstudio_coco"
        if is_coco(doc):
            return "coco"
        if isinstance(doc.get("shapes"), list):
            return "labelme"
        if "data" in doc and "annotations" in doc:
            raise fail(source, "this is a single Label Studio task", "export the whole project as 'JSON'")
    raise fail(source, f"unrecognised annotation file (a JSON {type(doc).__name__})",
               "pass a Label Studio export (JSON, JSON_MIN or COCO), a COCO file or LabelMe files")


def detect_format(path: str | os.PathLike) -> str:
    """Tell the format of an annotation file or folder (a folder holds LabelMe files).

    Args:
        path (str or PathLike): the file or folder.

    Returns:
        str: one of the keys of :data:`DESCRIPTIONS`.
    """
    if Path(path).is_dir():
        return "labelme"
    return detect_doc_format(read_json(path), str(path))


def _check_explicit(fmt: str, detected: str, source: str) -> str:
    if detected in _ACCEPTS[fmt]:
        return fmt if fmt == "labelstudio_coco" else detected
    raise fail(source, f"this is a {DESCRIPTIONS[detected]}, not a {DESCRIPTIONS[fmt]}",
               f"set the format to {detected} (or auto)")


def _as_list(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        return [str(inputs)]
    return [str(i) for i in inputs]


def _need_root(image_root: str | os.PathLike | None, fmt: str, source: str) -> str:
    if image_root is None:
        raise fail(source, f"a {DESCRIPTIONS[fmt]} needs the image folder",
                   "pass --image-root DIR (or set dataset.images)")
    return str(image_root)


def load_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    image_root: str | os.PathLike | None = None,
    fmt: str = "auto",
    **options: Any,
) -> list[dict]:
    """Load annotation exports of any supported format as Detectron2 standard dataset dicts.

    The importer counterpart of Detectron2's ``load_coco_json``: what it returns can be registered
    with ``DatasetCatalog.register(name, lambda: load_dataset(...))``, or use
    :func:`~maskseg_d2.data.register.register_dataset` for a dataset folder with a train/val split. Per
    format (details in each parser's module doc):

    * ``labelstudio`` (:mod:`~maskseg_d2.data.labelstudio`): one dict per labelled task; per task one
      annotation is chosen by ``pick`` (default: the ``ground_truth`` one, else the most recently
      updated), cancelled ones ignored; polygons and (rotated) rectangles become polygons in pixels,
      brush regions COCO RLE; ``image_id`` is the task id. ``labelstudio_min``
      (:mod:`~maskseg_d2.data.labelstudio_min`) gives the same instances (``ground_truth`` is not
      exported: several annotators' records are picked by ``updated_at``).
    * ``coco`` / ``labelstudio_coco`` (:mod:`~maskseg_d2.data.coco`): one dict per image, ``image_id``
      the COCO id; polygons stay polygons, RLE becomes compressed RLE (``counts`` as str).
    * ``labelme`` (:mod:`~maskseg_d2.data.labelme`): a folder (searched recursively for ``*.json``,
      sorted; hidden folders skipped), a file or a list of files; one dict per file, ``image_id`` the
      JSON path; images are found next to each file, so ``image_root`` is not needed.

    Sizes recorded in the files are reconciled with the images
    (:func:`~maskseg_d2.data.images.reconcile_size`: EXIF-rotated or resized photos are handled and
    counted). Skipped items (unlabelled tasks, unsupported shapes, empty masks) and adjustments are
    reported in one warning per load.

    Args:
        source (str, PathLike or list of them): annotation files and/or LabelMe folders.
        image_root (str, PathLike or None): the photos, searched recursively (needed by the Label
            Studio and COCO formats: the uploaded photos, or the folder COCO ``file_name`` is relative to).
        fmt (str): one of :data:`FORMATS` (``auto`` detects each input from its content).
        **options: the keyword options of :func:`read_dataset` (``classes``, ``class_map``,
            ``unknown``, ``pick``, ``image_key``, ``strict``).

    Returns:
        list[dict]: Detectron2 standard dicts with ``file_name`` (absolute), ``height``, ``width``
        (EXIF applied), ``image_id`` (per format, see above; re-assigned by
        :func:`~maskseg_d2.data.register.register_dataset`) and ``annotations`` (``category_id``
        contiguous in the order of the class list, ``bbox`` XYWH_ABS, ``segmentation`` polygons or RLE).
    """
    return read_dataset(source, image_root, fmt, **options).dicts


def read_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    image_root: str | os.PathLike | None = None,
    fmt: str = "auto",
    *,
    classes: list[str] | None = None,
    class_map: dict[str, Any] | None = None,
    unknown: str = "error",
    pick: str = "ground_truth_then_latest",
    image_key: str | None = None,
    strict: bool = True,
    syntax: str = "override",
) -> LoadResult:
    """The detailed form of :func:`load_dataset`: the dicts together with the class list and the counts.

    A separate function rather than a flag of :func:`load_dataset`, so that each returns one type
    (registration, conversion and the validation report need the classes and counts; users the dicts).
    All inputs share one class list (given, or discovered over all of them) and one skip/adjust
    summary. Each file is parsed once.

    Args:
        source (str, PathLike or list of them): annotation files and/or LabelMe folders.
        image_root (str, PathLike or None): the photos (needed by the Label Studio and COCO formats;
            LabelMe finds its images next to each JSON file).
        fmt (str): one of :data:`FORMATS` (``auto`` detects each input).
        classes (list[str] or None): class names in id order; None discovers them (sorted labels).
        class_map (dict or None): raw label -> class name (to null: drop the label).
        unknown (str): ``"error"`` or ``"skip"`` for labels outside ``classes``.
        pick (str): Label Studio annotation choice policy
            (:func:`~maskseg_d2.data.labelstudio.pick_annotation`).
        image_key (str or None): Label Studio task field holding the image; None guesses it.
        strict (bool): False collects invalid items in ``problems`` instead of raising (report mode,
            ``on_error=skip``): each is skipped and counted, and a file that cannot be read at all is
            one such item.
        syntax (str): how errors spell the fixes to type (:class:`~maskseg_d2.data.loading.ClassMapper`).

    Returns:
        LoadResult: the merged dicts (class ids assigned), ``thing_classes`` (discovered ones when
        ``classes`` is None), ``skipped``, ``adjusted``, ``problems``; ``format`` names the format(s)
        read, joined by ``+``.
    """
    if fmt not in FORMATS:
        raise fail(f"format={fmt}", "unknown format", f"use one of {', '.join(FORMATS)}")
    paths = _as_list(source)
    if not paths:
        raise fail("inputs", "no annotation file given", "pass at least one export")
    label = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    mapper, stats = ClassMapper(classes, class_map, unknown, syntax), LoadStats(label, strict)
    dicts, formats, labelme = [], [], []
    for path in paths:
        try:  # a whole file that cannot be read is one problem: skipped (and counted) when lenient
            kind = _read_one(path, fmt, image_root, mapper, stats, pick, image_key, dicts, labelme)
        except UserError as e:
            stats.problem(e, "unreadable file")  # raises unless lenient
            continue
        formats.append(kind)
    if labelme:
        dicts += labelme_dicts(labelme, mapper, stats)
    return finish_load(dicts, mapper, stats, "+".join(dict.fromkeys(formats)), logger)


def _read_one(path: str, fmt: str, image_root: str | os.PathLike | None, mapper: ClassMapper,
              stats: LoadStats, pick: str, image_key: str | None, dicts: list, labelme: list) -> str:
    """Read one input into ``dicts`` (LabelMe files are queued in ``labelme``); return its format."""
    if Path(path).is_dir():
        if fmt != "auto":
            _check_explicit(fmt, "labelme", path)
        labelme += labelme_files(path)
        return "labelme"
    doc = read_json(path)
    detected = detect_doc_format(doc, path)
    kind = detected if fmt == "auto" else _check_explicit(fmt, detected, path)
    if kind == "labelme":
        labelme.append(Path(path))
    elif kind in ("coco", "labelstudio_coco"):
        root = _need_root(image_root, kind, path)
        dicts += coco_dicts(doc, path, root, mapper, stats, labelstudio=kind == "labelstudio_coco")
    else:
        tasks = doc if kind == "labelstudio" else min_records_to_tasks(doc, path, stats)  # detected: a list
        root = _need_root(image_root, kind, path)
        dicts += tasks_to_dicts(tasks, path, root, mapper, stats, pick, image_key)
    return kind
