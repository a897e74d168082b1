"""COCO RLE: encode a mask to compressed ``counts``, and check compressed strings before pycocotools reads them.

pycocotools trusts compressed counts (a string covering too few or too many pixels writes outside the
mask), so :func:`coco_rle_totals` and :func:`rle_string_problem` decode them with numpy first. Label
Studio's brush RLE is another format: see :mod:`~maskseg_d2.data.labelstudio_rle`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_util

__all__ = ["RLEStringError", "coco_rle_totals", "mask_to_coco_rle", "rle_string_problem"]


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

