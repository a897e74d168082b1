"""Helpers shared by the annotation importers: classes, geometry -> Detectron2 annotations, image checks.

Coordinate convention (all importers): points are *continuous* pixel coordinates, x right and y down, the
image spanning ``[0, width] x [0, height]``; pixel (row i, column j) covers ``[j, j+1) x [i, i+1)``, so its
centre is at ``(j + 0.5, i + 0.5)``. This is the convention of COCO and Detectron2 (pycocotools rasterises
polygons this way), of Label Studio (percent of the image size) and of the LabelMe canvas, so no coordinate
is shifted. Boxes are ``XYWH_ABS`` in the same space; a mask's box is the extent of its pixels.

Annotations are built in two steps: the importers make geometry dicts with a pending class *name*
(:data:`PENDING_NAME`), and :meth:`ClassMapper.assign` turns names into contiguous ``category_id``
once every label has been seen (with ``classes=None`` the classes are discovered from the data).
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import unicodedata
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from detectron2.structures import BoxMode
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_util

from ..errors import UserError, fail

__all__ = [
    "IMAGE_EXTENSIONS",
    "PENDING_NAME",
    "UNKNOWN_POLICIES",
    "ClassMapper",
    "GeometryError",
    "ImageIndex",
    "LoadResult",
    "LoadStats",
    "MAX_IMAGE_PIXELS",
    "ON_ERROR_POLICIES",
    "OUTSIDE_SLACK",
    "check_declared_size",
    "check_utf8_name",
    "is_utf8",
    "coco_rle_totals",
    "RLEStringError",
    "rle_string_problem",
    "exif_orientation",
    "finish_load",
    "mask_annotation",
    "mask_to_coco_rle",
    "normalize_name",
    "numbers_only",
    "polygon_area",
    "polygons_annotation",
    "progress",
    "rasterize_polygons",
    "read_image_size",
    "read_json",
    "rle_annotation",
    "validate_polygon",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PENDING_NAME = "category_name"  # key holding the class name until ClassMapper.assign() sets category_id
UNKNOWN_POLICIES = ("error", "skip")
ON_ERROR_POLICIES = ("error", "skip")  # an invalid item: stop with its one-line error | skip it, counted
PROGRESS_MIN_ITEMS = 200  # smaller loads finish before a progress bar would be worth reading
# Pillow refuses to open images above 2x its MAX_IMAGE_PIXELS (DecompressionBombError), and so does
# Detectron2's read_image: a declared size above that is never a real training image, and is the bound
# on every mask the importers allocate.
MAX_IMAGE_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
# A vertex farther outside the image than this fraction of its width/height is not a click beside the
# border but a wrong unit or a wrong image (and huge values overflow pycocotools' rasteriser).
OUTSIDE_SLACK = 0.5
_EXIF_ORIENTATION = 0x0112
_JSON_NUMBERS = {int, float}


# ----------------------------------------------------------------------------------------------- JSON


def read_json(path: str | os.PathLike, what: str = "file", setting: str = "dataset.annotations",
              fix: str = "export it again from the annotation tool") -> Any:
    """Read a JSON file; any problem becomes a one-line :class:`UserError` naming the file.

    Args:
        path (str or PathLike): the JSON file.
        what (str): what the file is, for the messages ("ground-truth file").
        setting (str): the config key or argument that gave the path, for "file not found".
        fix (str): what to do about a file that is not valid JSON.

    Returns:
        Any: the parsed document.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise fail(str(path), f"{what} not found", f"check the path ({setting})") from None
    except OSError as e:
        raise fail(str(path), f"cannot read the {what}: {e.strerror}",
                   "check the path and the file's permissions") from None
    if not raw.lstrip(b"\xef\xbb\xbf").strip():  # nothing but white space (and a UTF-8 BOM)
        raise fail(str(path), "the file is empty", fix)
    try:
        return json.loads(raw)  # bytes: UTF-8 with or without BOM, UTF-16/32 detected like the json docs say
    except json.JSONDecodeError as e:
        cut = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated string")  # ran into the end
        hint = "the file looks truncated" if cut else "the file is not valid JSON"
        raise fail(str(path), f"invalid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}",
                   f"{hint}; {fix}") from None
    except UnicodeDecodeError as e:  # json guesses UTF-8/16/32 from the first bytes
        raise fail(str(path), f"invalid JSON: byte {e.start} is not {e.encoding} text",
                   f"save it as UTF-8 JSON; {fix}") from None
    except (RecursionError, ValueError) as e:  # nested thousands deep; an integer of > 4300 digits
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
        raise fail(str(path), f"invalid JSON: {why}", fix) from None


# -------------------------------------------------------------------------------------- skipped items


class GeometryError(UserError):
    """A region whose geometry cannot become an instance (degenerate polygon, NaN, outside the image ...).

    Attributes:
        kind (str): the problem class used by the validation report, e.g. ``"fewer than 3 points"``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _geometry_error(where: str, what: str, fix: str, kind: str) -> GeometryError:
    return GeometryError(str(fail(where, what, fix)), kind)


class LoadStats:
    """Counts skipped items by reason; :meth:`report` logs them in ONE warning per load.

    Besides skips it counts *adjustments* (an EXIF-rotated image whose annotation size was recorded
    before rotation, an image resized since it was annotated ...) and, when ``strict`` is False,
    collects *problems* (what would have been a :class:`UserError`) instead of raising, so a
    validation report can list all of them at once.

    Args:
        source (str): the file or folder being loaded (named in the warning).
        strict (bool): raise on the first problem (training) or collect them all (report).
    """

    def __init__(self, source: str, strict: bool = True) -> None:
        self.source = source
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.notes: Counter[str] = Counter()
        self.note_examples: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []

    def skip(self, reason: str, where: str) -> None:
        """Count one skipped item.

        Args:
            reason (str): why, e.g. ``"keypointlabels result"``; items are grouped by it.
            where (str): the item, e.g. ``"task 7 result ab12"`` (the first one is shown as example).
        """
        self.counts[reason] += 1
        self.examples.setdefault(reason, where)

    def note(self, reason: str, where: str) -> None:
        """Count one item that was kept after an adjustment (e.g. ``"rescaled to the image size"``)."""
        self.notes[reason] += 1
        self.note_examples.setdefault(reason, where)

    def problem(self, error: UserError, kind: str = "invalid item") -> None:
        """Raise ``error`` (strict), or record it and count the item as skipped (lenient).

        Args:
            error (UserError): the one-line error.
            kind (str): problem class when the error has no ``kind`` of its own.
        """
        if self.strict:
            raise error
        kind = getattr(error, "kind", kind)
        self.problems.append((kind, str(error)))
        self.skip(f"invalid: {kind}", str(error).split(" — ", 1)[0])  # file, item and what, not the fix

    @property
    def total(self) -> int:
        """int: number of skipped items."""
        return sum(self.counts.values())

    def message(self) -> str:
        """str: the one-line summary ("" when nothing was skipped or adjusted)."""
        parts = []
        if self.counts:
            listed = "; ".join(f"{n}× {r} (e.g. {self.examples[r]})" for r, n in sorted(self.counts.items()))
            parts.append(f"skipped {self.total} item(s): {listed}")
        if self.notes:
            listed = "; ".join(f"{n}× {r} (e.g. {self.note_examples[r]})"
                               for r, n in sorted(self.notes.items()))
            parts.append(f"adjusted {sum(self.notes.values())} item(s): {listed}")
        return f"{self.source}: " + " | ".join(parts) if parts else ""

    def report(self, log: logging.Logger | None = None) -> str:
        """Log the summary as one warning (nothing when nothing was skipped or adjusted).

        Returns:
            str: the message logged, or "".
        """
        msg = self.message()
        if msg:
            (log or logger).warning(msg)
        return msg


@dataclass
class LoadResult:
    """What an importer's ``read_*`` function returns (``load_*`` returns only ``dicts``).

    Attributes:
        dicts (list[dict]): Detectron2 standard dataset dicts.
        thing_classes (list[str]): class names; index = ``category_id``.
        skipped (dict[str, int]): skipped items by reason.
        adjusted (dict[str, int]): items kept after an adjustment (EXIF, rescale ...), by reason.
        problems (list[tuple[str, str]]): (kind, one-line message) of invalid items; only filled
            by a non-strict load (``strict=False``), a strict one raises on the first.
        format (str): the format read (``"labelstudio"``, ``"coco"`` ...).
    """

    dicts: list[dict]
    thing_classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    format: str = ""


def finish_load(dicts: list[dict], mapper: "ClassMapper", stats: LoadStats, fmt: str,
                log: logging.Logger | None = None) -> LoadResult:
    """Assign class ids, log the one skip/adjust warning and the summary; build the :class:`LoadResult`.

    Args:
        dicts (list[dict]): dataset dicts with pending class names.
        mapper (ClassMapper): the mapper that saw every label.
        stats (LoadStats): the load's counters.
        fmt (str): the format name, stored in the result.
        log (logging.Logger or None): the importer's logger.

    Returns:
        LoadResult: dicts with ``category_id`` set, classes and counts.
    """
    thing_classes = mapper.assign(dicts, stats.source, stats)
    stats.report(log)
    (log or logger).info("Loaded %d image(s) with %d instance(s) from %s", len(dicts),
                         sum(len(d["annotations"]) for d in dicts), stats.source)
    return LoadResult(dicts, thing_classes, dict(stats.counts), dict(stats.notes), list(stats.problems), fmt)


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """Wrap a long loop in a tqdm progress bar (on stderr); short loops are returned unchanged.

    Args:
        items (iterable): what the loop runs over.
        desc (str): the bar's label.
        total (int or None): number of items when ``items`` has no ``len``.

    Returns:
        iterable: ``items`` or a tqdm wrapper of it.
    """
    n = total if total is not None else (len(items) if hasattr(items, "__len__") else 0)
    if n < PROGRESS_MIN_ITEMS:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=n, unit="item", leave=False, mininterval=0.5)


# -------------------------------------------------------------------------------------------- classes


def _clean(label: Any) -> str:
    return str(label).strip()


class ClassMapper:
    """Resolves label strings to contiguous class ids ``0..K-1``.

    Labels are stripped, then mapped through ``class_map`` (a label mapped to ``None`` or ``""`` is
    dropped and counted as skipped). With ``classes=None`` the classes are discovered: the sorted set of
    mapped labels seen. With a ``classes`` list, a label outside it is an error listing every unknown
    label with its count and first occurrence -- or, with ``unknown="skip"``, its instances are
    dropped and counted per label.

    Args:
        classes (list[str] or None): the class names in id order, or None to discover them.
        class_map (dict[str, str] or None): raw label -> class name (e.g. ``{"Car": "car"}``).
        unknown (str): ``"error"`` (default) or ``"skip"``, for labels outside ``classes``.
    """

    def __init__(self, classes: Sequence[str] | None = None, class_map: Mapping[str, Any] | None = None,
                 unknown: str = "error"):
        if unknown not in UNKNOWN_POLICIES:
            raise fail(f"dataset.unknown={unknown}", "unknown policy",
                       f"use one of {', '.join(UNKNOWN_POLICIES)}")
        self.unknown = unknown
        self.class_map = {_clean(k): (None if v is None else _clean(v)) for k, v in (class_map or {}).items()}
        self.classes = None if classes is None else [_clean(c) for c in classes]
        if self.classes is not None:
            dup = sorted(c for c, n in Counter(self.classes).items() if n > 1)
            if dup or not all(self.classes):
                what = f"duplicate class name(s) {dup}" if dup else "empty class name"
                raise fail("dataset.classes", what, "list each class once")
        self.seen: Counter[str] = Counter()
        self.first_seen: dict[str, str] = {}

    def map(self, label: Any) -> str | None:
        """Strip and map one raw label.

        Args:
            label: the raw label from the annotation file.

        Returns:
            str or None: the class name, or None when ``class_map`` drops the label.
        """
        name = _clean(label)
        if name in self.class_map:
            name = self.class_map[name]
        return name or None

    def observe(self, name: str, where: str) -> None:
        """Record that an annotation with class ``name`` (already mapped) was seen at ``where``."""
        self.seen[name] += 1
        self.first_seen.setdefault(name, where)

    def unknown_labels(self) -> list[str]:
        """list[str]: labels seen that are not in ``classes`` (sorted; empty when discovering)."""
        return [] if self.classes is None else [n for n in sorted(self.seen) if n not in self.classes]

    def _unknown_error(self, source: str, unknown: list[str]) -> UserError:
        listed = ", ".join(f"'{n}' ({self.seen[n]}×, first at {self.first_seen[n]})" for n in unknown)
        return fail(
            source, f"unknown label(s) {listed}; known classes: {', '.join(self.classes or [])}",
            "add them to dataset.classes, map them with dataset.class_map (a label mapped to null is "
            "dropped), or set dataset.unknown=skip",
        )

    def thing_classes(self, source: str) -> list[str]:
        """The final class list; raises for labels outside ``classes`` (unless ``unknown="skip"``).

        Args:
            source (str): the annotation file or folder (named in the error).

        Returns:
            list[str]: class names, index = category_id.
        """
        if self.classes is None:
            return sorted(self.seen)
        unknown = self.unknown_labels()
        if unknown and self.unknown == "error":
            raise self._unknown_error(source, unknown)
        return list(self.classes)

    def assign(self, dicts: Iterable[dict], source: str, stats: LoadStats | None = None) -> list[str]:
        """Replace each annotation's pending class name by its ``category_id`` (in place).

        Instances with an unknown label are dropped (and counted in ``stats``) when ``unknown="skip"``,
        or when ``stats`` is lenient (the error is then recorded as a problem).

        Args:
            dicts (iterable[dict]): Detectron2 dataset dicts with ``annotations[i][PENDING_NAME]``.
            source (str): the annotation file or folder (named in errors).
            stats (LoadStats or None): where dropped instances are counted.

        Returns:
            list[str]: thing_classes.
        """
        unknown = self.unknown_labels()
        if unknown and self.unknown == "error":
            if stats is None:
                raise self._unknown_error(source, unknown)
            stats.problem(self._unknown_error(source, unknown), "unknown label")  # raises when strict
        classes = sorted(self.seen) if self.classes is None else list(self.classes)
        ids = {c: i for i, c in enumerate(classes)}
        for d in dicts:
            kept = []
            for ann in d["annotations"]:
                name = ann.pop(PENDING_NAME, None)
                if name is not None and name not in ids:
                    if stats is not None:
                        where = self.first_seen.get(name, str(d.get("image_id")))
                        stats.skip(f"unknown label '{name}'", where)
                    continue
                if name is not None:
                    ann["category_id"] = ids[name]
                kept.append(ann)
            d["annotations"] = kept
        return classes


# ------------------------------------------------------------------------------------------- geometry


def polygon_area(points: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Area of a simple polygon (shoelace formula, absolute value).

    Args:
        points (array-like): (N, 2) vertices x, y.

    Returns:
        float: the area in pixels².
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def validate_polygon(points: Any, where: str) -> np.ndarray:
    """Check a polygon: >= 3 points of 2 finite numbers each, area > 0.

    Args:
        points (array-like): (N, 2) vertices in pixels.
        where (str): the item, for the error (``"<file>: task 3 result ab shape 0"``).

    Returns:
        np.ndarray: (N, 2) float64 vertices.

    Raises:
        GeometryError: with ``kind`` "invalid points", "NaN coordinate", "fewer than 3 points" or
            "zero area".
    """
    try:
        if not isinstance(points, np.ndarray) and not numbers_only(points):
            raise TypeError  # True/"12" would become 1.0/12.0 in np.asarray: a silently moved vertex
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise _geometry_error(where, f"points are not a list of [x, y] numbers: {str(points)[:60]}",
                              "fix or delete this shape", "invalid points") from None
    if p.ndim != 2 or p.shape[1] != 2:
        raise _geometry_error(where, f"points are not a list of [x, y] pairs (shape {p.shape})",
                              "fix or delete this shape", "invalid points")
    if not np.isfinite(p).all():
        raise _geometry_error(where, "a coordinate is NaN or infinite",
                              "fix or delete this shape in the annotation tool", "NaN coordinate")
    if len(p) < 3:
        raise _geometry_error(where, f"polygon has {len(p)} point(s), needs at least 3",
                              "redraw or delete this shape", "fewer than 3 points")
    if polygon_area(p) <= 0:
        raise _geometry_error(where, "polygon has zero area (all points on one line)",
                              "redraw or delete this shape", "zero area")
    return p


def numbers_only(points: Any) -> bool:
    """bool: True when ``points`` is a list of lists of JSON numbers (int or float; bool and str are not).

    Args:
        points: the parsed ``points`` value (shape not checked here).
    """
    try:
        types = set(map(type, itertools.chain.from_iterable(points)))  # C speed: polygons can be long
    except TypeError:  # not a list of lists
        return False
    return types <= _JSON_NUMBERS or all(issubclass(t, (int, float, np.number)) and not issubclass(t, bool)
                                         for t in types)  # numpy scalars from internal callers


def _check_extent(lo: np.ndarray, hi: np.ndarray, size: tuple[int, int], where: str) -> None:
    h, w = size
    slack = np.array([OUTSIDE_SLACK * w, OUTSIDE_SLACK * h])
    if (lo < -slack).any() or (hi > np.array([w, h]) + slack).any():
        far = np.where(lo < -slack, lo, hi)
        raise _geometry_error(
            where, f"the shape reaches ({far[0]:.6g}, {far[1]:.6g}), far outside the {w}x{h} image",
            "fix the coordinates (pixels of this image?) or delete this shape", "outside the image")


def _clip_box(x0: float, y0: float, x1: float, y1: float, size: tuple[int, int] | None) -> list[float]:
    if size is not None:
        h, w = size
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _set_category(ann: dict, category: str | int | None) -> dict:
    if isinstance(category, int) and not isinstance(category, bool):
        ann["category_id"] = category
    elif category is not None:
        ann[PENDING_NAME] = category
    return ann


def polygons_annotation(
    polygons: Sequence[np.ndarray], category: str | int | None = None,
    image_size: tuple[int, int] | None = None, where: str = "",
) -> dict:
    """One Detectron2 annotation from one or more polygons (their union is the instance).

    Args:
        polygons (list[np.ndarray]): validated (N, 2) pixel vertices (see :func:`validate_polygon`).
        category (str, int or None): a class name (resolved to ``category_id`` later by
            :meth:`ClassMapper.assign`) or a final ``category_id``.
        image_size (tuple[int, int] or None): (height, width); the box is clipped to it, and a vertex
            farther outside than :data:`OUTSIDE_SLACK` of the size is an error.
        where (str): the item, for the error when the shape lies outside the image.

    Returns:
        dict: ``segmentation`` (list of flat [x1, y1, ...] lists), ``bbox`` (XYWH_ABS), ``bbox_mode``,
        ``iscrowd`` 0, and ``category_id`` or the pending class name.
    """
    allp = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    if image_size is not None:
        _check_extent(allp.min(axis=0), allp.max(axis=0), image_size, where)
    bbox = _clip_box(*allp.min(axis=0), *allp.max(axis=0), image_size)
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise _geometry_error(where, "the shape lies outside the image", "move or delete this shape",
                              "outside the image")
    ann = {
        "segmentation": [[float(v) for v in np.asarray(p, dtype=np.float64).ravel()] for p in polygons],
        "bbox": bbox,
        "bbox_mode": BoxMode.XYWH_ABS,
        "iscrowd": 0,
    }
    return _set_category(ann, category)


def mask_to_coco_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a (H, W) mask, with ``counts`` as str (JSON and pickle friendly).

    Args:
        mask (np.ndarray): (H, W) bool or 0/1 array.

    Returns:
        dict: ``{"size": [H, W], "counts": str}``.
    """
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    # pycocotools wants column-major pixels: cv2.transpose(m).T is that layout without a copy of its own,
    # ~10x faster than np.asfortranarray on a 1024x768 mask (the brush-import hot path)
    rle = mask_util.encode(cv2.transpose(m).T if m.size else np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_annotation(mask: np.ndarray, category: str | int | None = None) -> dict | None:
    """One Detectron2 annotation from a bool mask (segmentation = COCO RLE).

    Args:
        mask (np.ndarray): (H, W) bool mask of the instance, image-sized.
        category (str, int or None): a class name (resolved to ``category_id`` later by
            :meth:`ClassMapper.assign`) or a final ``category_id``.

    Returns:
        dict or None: the annotation (box = extent of the mask's pixels), None when the mask is empty.
    """
    return rle_annotation(mask_to_coco_rle(mask), category)


_RLE_BAD_CHAR = re.compile(r"[^0-o]")  # pycocotools' compressed counts use chars '0' (48) .. 'o' (111)
_RLE_LONG_RUN = re.compile(r"[P-o]{7}")  # 7 groups with 'more follow' (0x20, chars >= 'P'): > 35 bits


class RLEStringError(ValueError):
    """A compressed COCO RLE string that pycocotools cannot read: ``index`` (which string) and ``reason``."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"string {index}: {reason}")
        self.index, self.reason = index, reason


def coco_rle_totals(counts: Sequence[str | bytes], chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Pixels covered and shortest run of many compressed COCO RLE strings, decoded with numpy.

    The format (pycocotools' ``rleFrString``): each run is a little-endian sequence of 5-bit groups in
    characters ``'0'..'o'`` (48 + value; bit 0x20 = more groups follow, bit 0x10 of the last group =
    negative); from the fourth run on, a run is stored as the difference to the run two places before.
    pycocotools trusts the counts: a string covering fewer pixels than H*W leaves mask bytes unset, one
    covering more (or holding a negative run) writes past the mask. Check ``totals == H*W`` and
    ``min_runs >= 0`` before decoding.

    Most runs are one character, so those are decoded without a per-run loop (~15x faster than a
    run-by-run decode on 100k masks), in chunks of ``chunk`` characters so the int64 temporaries stay in
    cache instead of faulting in hundreds of MB.

    Args:
        counts (sequence of str or bytes): the ``counts`` strings.
        chunk (int): characters decoded per numpy pass.

    Returns:
        tuple[np.ndarray, np.ndarray]: per string, the sum of its runs and its smallest run (int64;
        0 and 0 for an empty string).

    Raises:
        RLEStringError: (a ``ValueError``) for a character outside ``'0'..'o'``, a string ending inside
            a run or a run of more than 7 characters (not a 32-bit count); it names the string's index.
    """
    counts = [c.decode("latin-1") if isinstance(c, (bytes, bytearray)) else c for c in counts]
    lengths = np.fromiter(map(len, counts), np.int64, len(counts))
    cut = np.searchsorted(np.cumsum(lengths), np.arange(chunk, int(lengths.sum()), max(chunk, 1))) + 1
    edges = [0, *sorted({int(b) for b in cut if 0 < b < len(counts)}), len(counts)]
    parts = []  # at least one (maybe empty) chunk; chunks in order, so the first bad string is named
    for a, b in zip(edges[:-1], edges[1:]):
        try:
            parts.append(_rle_totals_chunk(counts[a:b], lengths[a:b]))
        except RLEStringError as e:
            raise RLEStringError(a + e.index, e.reason) from None
    return np.concatenate([t for t, _ in parts]), np.concatenate([m for _, m in parts])


def rle_string_problem(counts: str) -> str:
    """Why one compressed counts string is not a pycocotools string; "" when it is one (whether its runs
    add up to the image is for :func:`coco_rle_totals` to say)."""
    bad = _RLE_BAD_CHAR.search(counts)
    if bad:
        return f"character {bad.group()!r} is not a COCO RLE character ('0'..'o')"
    if counts and ord(counts[-1]) >= 80:
        return "the counts string ends inside a run"
    if _RLE_LONG_RUN.search(counts):
        return "a run of more than 7 characters is not a pixel count"
    return ""


def _rle_totals_chunk(counts: Sequence[str], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    totals, mins = np.zeros(len(counts), np.int64), np.zeros(len(counts), np.int64)
    # surrogatepass: a lone surrogate (JSON "\ud800") becomes 3 bytes, caught by the length check below
    c = np.frombuffer("".join(counts).encode("utf-8", "surrogatepass"), np.uint8)
    if c.size != lengths.sum() or (c.size and (c.min() < 48 or c.max() > 111)):
        _raise_first_bad(counts)
    if not c.size:
        return totals, mins
    c = c - np.uint8(48)  # 6 bits: 0x20 = more groups follow, 0x10 of the last group = negative
    cum = np.cumsum(lengths)
    ends = np.flatnonzero(c < 32)  # the last group of each run
    nchar = np.diff(ends, prepend=-1)
    if not (c[cum[lengths > 0] - 1] < 32).all() or nchar.max() > 7:  # a run unfinished or not a 32-bit count
        _raise_first_bad(counts)
    upto = np.searchsorted(ends, cum)  # runs in strings 0..s
    last = c[ends].astype(np.int64)
    value = (last & 0x1F) - ((last & 0x10) << 1)  # one-group runs: 5-bit two's complement
    multi = np.flatnonzero(nchar > 1)
    if multi.size:
        value[multi] = _multi_group_runs(c, ends[multi], nchar[multi])
    nruns = np.diff(upto, prepend=0)
    first = upto - nruns
    # from the 4th run on, a run is stored as the difference to the run two before: cumulative sums
    # along each parity of the flat array, restarting at runs 0, 1 and 2 of every string
    restart = np.zeros(ends.size, bool)
    for k in range(3):
        restart[(first + k)[nruns > k]] = True
    for par in (0, 1):
        x = value[par::2]
        r = np.flatnonzero(restart[par::2])
        before = np.where(r > 0, np.cumsum(x)[r - 1], 0)
        y = x.copy()
        y[r] -= np.diff(before, prepend=0)
        value[par::2] = np.cumsum(y)
    present = np.flatnonzero(nruns)
    totals[present] = np.add.reduceat(value, first[present])
    mins[present] = np.minimum.reduceat(value, first[present])
    return totals, mins


def _raise_first_bad(counts: Sequence[str]) -> None:
    """Raise :class:`RLEStringError` for the first string with a problem (error path only: a loop)."""
    k, why = next((k, why) for k, s in enumerate(counts) if (why := rle_string_problem(s)))
    raise RLEStringError(k, why)


def _multi_group_runs(c: np.ndarray, ends: np.ndarray, nchar: np.ndarray) -> np.ndarray:
    """Values of the runs written with 2..7 5-bit groups (little-endian, sign in the last group)."""
    start = ends - nchar + 1
    value = np.zeros(nchar.size, np.int64)
    for d in range(7):
        sel = np.flatnonzero(nchar > d)
        value[sel] |= (c[start[sel] + d] & 0x1F).astype(np.int64) << (5 * d)
    neg = (c[ends] & 0x10) != 0
    value[neg] -= np.left_shift(np.int64(1), 5 * nchar[neg])
    return value


def rle_annotation(rle: dict, category: str | int | None = None, iscrowd: int = 0) -> dict | None:
    """One Detectron2 annotation from a COCO RLE, without decoding it (box from ``toBbox``).

    Args:
        rle (dict): ``{"size": [H, W], "counts": str or bytes}`` (compressed COCO RLE).
        category (str, int or None): a class name or a final ``category_id``.
        iscrowd (int): COCO's crowd flag, kept as is.

    Returns:
        dict or None: the annotation (``counts`` as str), None when the mask is empty.
    """
    counts = rle["counts"]
    rle = {"size": [int(v) for v in rle["size"]],
           "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    if float(mask_util.area(rle)) <= 0:
        return None
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    ann = {"segmentation": rle, "bbox": bbox, "bbox_mode": BoxMode.XYWH_ABS, "iscrowd": int(bool(iscrowd))}
    return _set_category(ann, category)


def rasterize_polygons(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Union of polygons as a (H, W) bool mask, rasterised like COCO/Detectron2 (pycocotools).

    Args:
        polygons (list[np.ndarray]): (N, 2) pixel vertices each.
        height (int): image height.
        width (int): image width.

    Returns:
        np.ndarray: (H, W) bool.
    """
    flat = [np.asarray(p, dtype=np.float64).ravel().tolist() for p in polygons]
    rles = mask_util.frPyObjects(flat, height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


# -------------------------------------------------------------------------------------------- images


def read_image_size(path: str | os.PathLike, where: str = "") -> tuple[int, int]:
    """Size of an image as Detectron2's ``read_image`` sees it (EXIF orientation applied).

    Args:
        path (str or PathLike): the image file (only the header is read).
        where (str): the item, for the error.

    Returns:
        tuple[int, int]: (height, width); swapped when the EXIF orientation is 5..8 (90° rotations).
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = exif_orientation(im)
    except Image.DecompressionBombError as e:  # not an OSError; Detectron2's read_image would raise it too
        raise fail(where or str(path), f"image {path} is too large to open: {e}",
                   f"resize it below {MAX_IMAGE_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError) as e:
        raise fail(where or str(path), f"cannot read image {path}: {e}",
                   "replace the file with a valid image") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def check_declared_size(height: Any, width: Any, where: str, what: str = "size") -> tuple[int, int]:
    """Check an image size written in an annotation file: positive, finite, openable.

    Args:
        height: the recorded height (a JSON value).
        width: the recorded width.
        where (str): the item, for the error.
        what (str): how the file calls the size (``"imageWidth/imageHeight"`` ...), for the error.

    Returns:
        tuple[int, int]: (height, width), rounded.

    Raises:
        UserError: for a value that is not a positive finite number, or a size above
            :data:`MAX_IMAGE_PIXELS` (no mask that large is ever allocated).
    """
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0.5
             for v in (height, width))
    if not ok:
        given = "missing" if height is None or width is None else f"{width!r}x{height!r} (WxH)"
        raise fail(where, f"{what} is {given}, expected positive numbers",
                   "re-export the annotations (or delete the size fields to use the image's)")
    h, w = int(round(height)), int(round(width))
    if h * w > MAX_IMAGE_PIXELS:
        raise fail(where, f"{what} is {w}x{h} (WxH), larger than any image Detectron2 can read "
                   f"({MAX_IMAGE_PIXELS} pixels)", "re-export the annotations of the real image")
    return h, w


def is_utf8(name: str) -> bool:
    """bool: False for a file name that was not valid UTF-8 on disk (Python holds it with surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_utf8_name(path: str, where: str) -> str:
    """Return ``path`` when it is valid UTF-8; a file name in another encoding is an error.

    On Linux such names reach Python as lone surrogates; they cannot be written to a JSON or a log file.

    Args:
        path (str): the file path.
        where (str): the item, for the error.

    Returns:
        str: ``path``.
    """
    if not is_utf8(path):
        raise fail(where, f"file name {os.fsencode(path)!r} is not valid UTF-8",
                   "rename the file (e.g. convmv -f latin1 -t utf8 --notest <file>)")
    return path


def exif_orientation(im: Image.Image) -> int:
    """int: the EXIF orientation tag of an open image (1 = upright; 1 also when absent or broken)."""
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: Detectron2/PIL ignore it too
        return 1


def normalize_name(name: str) -> str:
    """File-name key that survives Label Studio's upload renaming.

    URL-decoded, Unicode NFC, stripped, spaces -> ``_``, and characters other than letters, digits,
    ``-``, ``_`` and ``.`` removed (what Django's ``get_valid_filename`` does on upload). Case-sensitive.

    Args:
        name (str): a file name (no folder).

    Returns:
        str: the normalised name.
    """
    s = unicodedata.normalize("NFC", urllib.parse.unquote(name)).strip().replace(" ", "_")
    return "".join(ch for ch in s if ch.isalnum() or ch in "-_.")


class ImageIndex:
    """One-time index of the images under a folder (recursive; hidden folders skipped).

    Keys: relative POSIX path, file name, and :func:`normalize_name` of the file name.

    Args:
        root (str or PathLike): the image folder.
        where (str): who needs it (named in the error when the folder is missing).
    """

    def __init__(self, root: str | os.PathLike, where: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise fail(where or str(root), f"image folder {root} does not exist",
                       "put the photos there or set dataset.images")
        self.relpaths: set[str] = set()
        self.by_name: dict[str, list[str]] = {}
        self.by_norm: dict[str, list[str]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(self.root)
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                    rel = (rel_dir / f).as_posix()
                    self.relpaths.add(rel)
                    self.by_name.setdefault(unicodedata.normalize("NFC", f), []).append(rel)
                    self.by_norm.setdefault(normalize_name(f), []).append(rel)

    def __len__(self) -> int:
        return len(self.relpaths)

    def path(self, rel: str, where: str = "") -> str:
        """str: absolute path of an indexed relative path (an error when the name is not UTF-8)."""
        return check_utf8_name(os.path.abspath(self.root / rel), where or str(self.root))
