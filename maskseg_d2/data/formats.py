"""Format detection and one entry point that reads any supported export (several files at once).

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
from .labelstudio import check_tasks, tasks_to_dicts
from .labelstudio_min import is_json_min, min_records_to_tasks
from .loading import ClassMapper, LoadResult, LoadStats, finish_load

__all__ = ["FORMATS", "DESCRIPTIONS", "detect_format", "detect_doc_format", "read_dataset"]

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


def read_dataset(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    fmt: str = "auto",
    image_root: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    class_map: dict[str, Any] | None = None,
    unknown: str = "error",
    pick: str = "ground_truth_then_latest",
    image_key: str | None = None,
    strict: bool = True,
) -> LoadResult:
    """Read one or more annotation files/folders of any supported format into one dataset.

    All inputs share one class list (given, or discovered over all of them) and one skip/adjust
    summary. Each file is parsed once.

    Args:
        inputs (str, PathLike or list of them): annotation files and/or LabelMe folders.
        fmt (str): one of :data:`FORMATS` (``auto`` detects each input).
        image_root (str, PathLike or None): the photos (needed by the Label Studio and COCO formats;
            LabelMe finds its images next to each JSON file).
        classes (list[str] or None): class names in id order; None discovers them.
        class_map (dict or None): raw label -> class name (to null: drop the label).
        unknown (str): ``"error"`` or ``"skip"`` for labels outside ``classes``.
        pick (str): Label Studio annotation choice policy
            (:func:`~maskseg_d2.data.labelstudio.pick_annotation`).
        image_key (str or None): Label Studio task field holding the image; None guesses it.
        strict (bool): False collects invalid items in ``problems`` instead of raising (report mode,
            ``on_error=skip``): each is skipped and counted, and a file that cannot be read at all is
            one such item.

    Returns:
        LoadResult: the merged dicts (class ids assigned), classes, counts; ``format`` names the
        format(s) read, joined by ``+``.
    """
    if fmt not in FORMATS:
        raise fail(f"format={fmt}", "unknown format", f"use one of {', '.join(FORMATS)}")
    paths = _as_list(inputs)
    if not paths:
        raise fail("inputs", "no annotation file given", "pass at least one export")
    source = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    mapper, stats = ClassMapper(classes, class_map, unknown), LoadStats(source, strict)
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
        tasks = check_tasks(doc, path) if kind == "labelstudio" else min_records_to_tasks(doc, path, stats)
        root = _need_root(image_root, kind, path)
        dicts += tasks_to_dicts(tasks, path, root, mapper, stats, pick, image_key)
    return kind
