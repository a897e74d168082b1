"""Value checks shared by the COCO evaluation inputs (:mod:`.ground_truth`, :mod:`.predictions`).

Everything is checked in Python before any of it reaches C code (pycocotools, faster-coco-eval): a NaN,
infinite or huge coordinate segfaults their polygon rasteriser, an RLE whose counts do not cover exactly
height x width pixels is silently mis-read (too short) or aborts them (too long), and an id that is a
list or a string crashes their indexes. Each problem becomes a one-line
:class:`~maskseg_d2.errors.UserError` naming the file and the item (``annotation #i``, ``result #i``,
image id); what can be repaired (annotation id 0, a missing ``area``) is repaired and counted in the
report. The checks on valid inputs cost a few C-level passes per item plus one numpy pass over all boxes
and RLE strings (see ``benchmarks/bench_eval.py``).

The ``_``-prefixed helpers here are private to ``maskseg_d2.evaluation``: the two loaders share them.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import reprlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..data.coco_rle import RLEStringError, coco_rle_totals, rle_string_problem
from ..data.images import MAX_IMAGE_PIXELS

__all__ = ["TASKS", "COORD_FACTOR", "gc_paused"]

TASKS = ("bbox", "segm")
# A coordinate farther than this many image sizes from the image is a wrong unit or a wrong image, and
# huge values make pycocotools' rasteriser allocate (or index) without bound.
COORD_FACTOR = 10
_SIDE_WITHOUT_SIZE = 65_535  # bound for images without height/width: the largest JPEG side
_MAX_ID = 2**53  # ids go through float64 arrays in the backends: larger ones would collide
_MAX_AREA = COORD_FACTOR**2 * MAX_IMAGE_PIXELS
_NUMBER_TYPES = frozenset({int, float})  # exact types: JSON gives int/float; bool is not a number here
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


def _limits(images: list[dict]) -> tuple[dict[int, list[int] | None], dict[int, float]]:
    """image id -> [height, width] or None, and -> the largest coordinate magnitude accepted."""
    sizes = {img["id"]: [img["height"], img["width"]] if "height" in img else None for img in images}
    limits = {i: COORD_FACTOR * float(max(hw) if hw else _SIDE_WITHOUT_SIZE) for i, hw in sizes.items()}
    return sizes, limits
