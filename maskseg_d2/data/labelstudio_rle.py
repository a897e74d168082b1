"""Label Studio brush RLE: the bit-packed run-length format of ``BrushLabels`` results.

This is Label Studio's own format (a port of thi.ng ``rle-pack``), **not** COCO RLE. A result's
``value.rle`` is a list of byte values read as one bit stream, most significant bit first:

* header (53 bits): 32-bit value count ``num``; 5 bits ``word_size - 1`` (always 7: 8-bit values);
  four 4-bit fields ``size[k] - 1`` giving the bit width of a run-length field for index ``k``
  (Label Studio writes 3, 4, 8, 16);
* chunks until ``num`` values are produced: 1 flag bit, 2 bits index ``k``, ``size[k]`` bits ``n``.
  Flag 1: one 8-bit value repeated ``n + 1`` times. Flag 0: ``n + 1`` literal 8-bit values;
* zero padding up to the byte boundary.

The values are the RGBA bytes of an H x W image (H*W*4 values, row-major); the mask is the alpha
channel. :func:`encode` reproduces Label Studio's Python encoder (``encode_rle``) bit for bit:
a singleton becomes a literal chunk of length 1, runs of 2..8 / 9..16 / 17..256 use index 0 / 1 / 2,
longer runs index 3, split into 65536-value chunks followed by the remainder (also index 3), and the
padding is 1 to 8 zero bits (a whole zero byte when the stream is already byte aligned).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RUN_SIZES", "WORD_SIZE", "CountMismatch", "decode", "encode", "mask_to_brush_rle", "rle_to_mask"]

WORD_SIZE = 8
RUN_SIZES = (3, 4, 8, 16)
_HEADER_BITS = 32 + 5 + 4 * len(RUN_SIZES)
_MAX_CHUNK = 1 << RUN_SIZES[-1]  # longest run one chunk can hold (65536)
_ALPHA_THRESHOLD = 128


class CountMismatch(ValueError):
    """The RLE header declares ``num`` values where ``expected`` were required (nothing was decoded).

    Attributes:
        num (int): the declared value count.
        expected (int): the required one.
    """

    def __init__(self, num: int, expected: int) -> None:
        super().__init__(f"brush RLE declares {num} values, expected {expected}")
        self.num, self.expected = num, expected


# ----------------------------------------------------------------------------------------- encoder
def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 1-D array into maximal runs of equal values.

    Args:
        values (np.ndarray): 1-D array.

    Returns:
        tuple[np.ndarray, np.ndarray]: run lengths (int64) and run values, in order.
    """
    if values.size == 0:
        return np.zeros(0, np.int64), values[:0]
    starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
    lengths = np.diff(np.append(starts, values.size)).astype(np.int64)
    return lengths, values[starts]


def _runs_to_fields(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn runs into chunk codes the way Label Studio's encoder does.

    Args:
        lengths (np.ndarray): run lengths (>= 1), int64.
        values (np.ndarray): run values (0..255).

    Returns:
        tuple[np.ndarray, np.ndarray]: per chunk, the code (flag, k, n, value packed MSB first) and
        its width in bits.
    """
    is_long = lengths > 256
    n_full = np.where(is_long, (lengths - 1) // _MAX_CHUNK, 0)  # full 65536-chunks before the rest
    per_run = n_full + 1
    run_idx = np.repeat(np.arange(lengths.size), per_run)
    first = np.repeat(np.cumsum(per_run) - per_run, per_run)
    is_rest = (np.arange(run_idx.size) - first) == n_full[run_idx]
    count = np.where(is_rest, lengths[run_idx] - n_full[run_idx] * _MAX_CHUNK, _MAX_CHUNK)
    long_chunk = is_long[run_idx]
    k = np.where(long_chunk, 3, np.where(count <= 8, 0, np.where(count <= 16, 1, 2))).astype(np.int64)
    flag = ((count > 1) | long_chunk).astype(np.int64)  # the remainder of a long run stays a repeat
    size = np.asarray(RUN_SIZES, np.int64)[k]
    code = (
        (flag << (2 + size + WORD_SIZE))
        | (k << (size + WORD_SIZE))
        | ((count - 1) << WORD_SIZE)
        | values[run_idx].astype(np.int64)
    )
    return code, 3 + size + WORD_SIZE


def _header_fields(num: int) -> tuple[np.ndarray, np.ndarray]:
    codes = [num, WORD_SIZE - 1, *(s - 1 for s in RUN_SIZES)]
    widths = [32, 5, *([4] * len(RUN_SIZES))]
    return np.asarray(codes, np.int64), np.asarray(widths, np.int64)


def _pack_fields(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate variable-width codes (MSB first) into bytes, with Label Studio's padding.

    Args:
        codes (np.ndarray): int64 field values.
        widths (np.ndarray): bit width of each field (<= 32).

    Returns:
        list[int]: byte values.
    """
    ends = np.cumsum(widths)
    starts = ends - widths
    total = int(ends[-1]) if ends.size else 0
    pad = 8 - total % 8  # 1..8: Label Studio adds a full zero byte to an aligned stream
    bits = np.zeros(total + pad, np.uint8)
    for b in range(int(widths.max())):  # one vectorised pass per bit position inside a field
        sel = widths > b
        bits[starts[sel] + b] = (codes[sel] >> (widths[sel] - 1 - b)) & 1
    return np.packbits(bits).tolist()


def _encode_runs(num: int, lengths: np.ndarray, values: np.ndarray) -> list[int]:
    head_codes, head_widths = _header_fields(num)
    codes, widths = _runs_to_fields(lengths, values)
    return _pack_fields(np.concatenate((head_codes, codes)), np.concatenate((head_widths, widths)))


def encode(values: np.ndarray) -> list[int]:
    """Encode a 1-D array of 8-bit values into Label Studio brush RLE.

    Args:
        values (np.ndarray): 1-D array of integers in 0..255 (usually H*W*4 RGBA bytes).

    Returns:
        list[int]: the RLE byte values, identical to Label Studio's ``encode_rle``.

    Raises:
        ValueError: if the array is not 1-D or holds values outside 0..255.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"encode expects a 1-D array, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iub" or arr.min() < 0 or arr.max() > 255):
        raise ValueError("encode expects integer values in 0..255 (8-bit words)")
    lengths, run_values = _runs(arr.astype(np.int64, copy=False))
    return _encode_runs(arr.size, lengths, run_values)


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a binary mask the way Label Studio's ``mask2rle`` does.

    Every pixel becomes 4 RGBA bytes, all 255 inside the mask and 0 outside.

    Args:
        mask (np.ndarray): H x W array, bool or 0/1 (any non-zero value counts as inside).

    Returns:
        list[int]: the RLE byte values of the H*W*4 RGBA bytes.

    Raises:
        ValueError: if the mask is not 2-D.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask_to_brush_rle expects an H x W mask, got shape {m.shape}")
    lengths, run_values = _runs(m.astype(bool).ravel())
    return _encode_runs(m.size * 4, lengths * 4, run_values.astype(np.int64) * 255)


# ----------------------------------------------------------------------------------------- decoder
def _as_bytes(rle: Sequence[int]) -> bytes:
    if isinstance(rle, (bytes, bytearray, memoryview)):
        return bytes(rle)
    if isinstance(rle, (list, tuple)) and not set(map(type, rle)) <= {int}:  # numpy reads True as 1
        raise ValueError("brush RLE must hold integers in 0..255")
    arr = np.asarray(rle)
    if arr.ndim != 1:
        raise ValueError(f"brush RLE must be a flat list of byte values, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255):
        raise ValueError("brush RLE must hold integers in 0..255")
    return arr.astype(np.uint8).tobytes()


def _read_header(buf: bytes) -> tuple[int, list[int]]:
    """Parse the 53-bit header.

    Args:
        buf (bytes): the RLE stream.

    Returns:
        tuple[int, list[int]]: the value count and the four run-length field widths.
    """
    if len(buf) * 8 < _HEADER_BITS:
        raise ValueError(f"brush RLE truncated: {len(buf)} bytes cannot hold the 53-bit header")
    num = int.from_bytes(buf[:4], "big")
    rest = int.from_bytes(buf[4:7], "big")  # bits 32..55
    word_size = ((rest >> 19) & 31) + 1
    if word_size != WORD_SIZE:
        raise ValueError(f"brush RLE word size is {word_size} bits; Label Studio masks use {WORD_SIZE}")
    sizes = [((rest >> (15 - 4 * i)) & 15) + 1 for i in range(4)]
    return num, sizes


def _walk_chunks(
    buf: bytes, num: int, sizes: list[int]
) -> tuple[list[list[int]], list[tuple[int, int, int]]]:
    """Walk the chunks with integer arithmetic on 40-bit windows of the stream.

    Args:
        buf (bytes): the RLE stream.
        num (int): value count from the header.
        sizes (list[int]): run-length field widths.

    Returns:
        tuple: ``[starts, values, lengths]`` of the repeat runs (one-value literals included), in
        output order, and the longer literal chunks as ``(output_start, bit_position, count)``.

    Raises:
        ValueError: if the stream ends early or a run overruns ``num``.
    """
    nbits = len(buf) * 8
    padded = buf + bytes(8)  # a window read near the end sees zeros; `pos > nbits` catches it
    masks = [(1 << s) - 1 for s in sizes]
    rep_starts: list[int] = []
    rep_vals: list[int] = []
    rep_lens: list[int] = []
    literals: list[tuple[int, int, int]] = []
    pos, i = _HEADER_BITS, 0
    from_bytes = int.from_bytes
    while i < num:
        shift = 37 - (pos & 7)  # window = 40 bits starting at the byte holding `pos`
        win = from_bytes(padded[pos >> 3 : (pos >> 3) + 5], "big")
        head = (win >> shift) & 7
        k = head & 3
        size = sizes[k]
        count = ((win >> (shift - size)) & masks[k]) + 1
        if i + count > num:
            raise ValueError(f"brush RLE malformed: a run at value {i} overruns the declared count {num}")
        if head >> 2 or count == 1:  # repeat chunk, or a one-value literal: value follows directly
            rep_starts.append(i)
            rep_vals.append((win >> (shift - size - 8)) & 255)
            rep_lens.append(count)
            pos += 3 + size + 8
        else:
            literals.append((i, pos + 3 + size, count))
            pos += 3 + size + 8 * count
        if pos > nbits:
            raise ValueError(
                f"brush RLE truncated: the stream ({len(buf)} bytes) ends before value {i} "
                f"of the declared {num}"
            )
        i += count
    return [rep_starts, rep_vals, rep_lens], literals


def decode(rle: Sequence[int], expected: int | None = None) -> np.ndarray:
    """Decode Label Studio brush RLE.

    Args:
        rle (Sequence[int]): the ``value.rle`` byte list (or ``bytes``).
        expected (int or None): the value count the caller needs (H*W*4); checked against the header
            before anything is allocated, so a corrupt header cannot ask for gigabytes.

    Returns:
        np.ndarray: 1-D uint8 array with as many values as the header declares.

    Raises:
        CountMismatch: when the header's count is not ``expected``.
        ValueError: on a truncated stream, a word size other than 8, or runs that overrun the count.
    """
    buf = _as_bytes(rle)
    num, sizes = _read_header(buf)
    if expected is not None and num != expected:
        raise CountMismatch(num, expected)
    (rep_starts, rep_vals, rep_lens), literals = _walk_chunks(buf, num, sizes)
    lens = np.asarray(rep_lens, np.int64)
    filled = np.repeat(np.asarray(rep_vals, np.uint8), lens)
    if not literals:
        return filled
    out = np.empty(num, np.uint8)
    # output index of every repeated value: its run's start plus its offset inside the run
    offsets = np.asarray(rep_starts, np.int64) - (np.cumsum(lens) - lens)
    out[np.repeat(offsets, lens) + np.arange(filled.size)] = filled
    bits = np.unpackbits(np.frombuffer(buf, np.uint8))
    for start, bitpos, count in literals:
        out[start : start + count] = np.packbits(bits[bitpos : bitpos + 8 * count])
    return out


def rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode a brush result into a binary mask.

    Args:
        rle (Sequence[int]): the ``value.rle`` byte list.
        height (int): the result's ``original_height``.
        width (int): the result's ``original_width``.

    Returns:
        np.ndarray: bool array of shape (height, width), True where alpha >= 128.

    Raises:
        ValueError: if the RLE is malformed or does not hold height*width*4 values.
    """
    values = decode(rle)
    expected = int(height) * int(width) * 4
    if values.size != expected:
        raise ValueError(
            f"brush RLE holds {values.size} values but a {height}x{width} RGBA image needs {expected}"
        )
    alpha = values.reshape(int(height), int(width), 4)[:, :, 3]
    # Editor strokes have anti-aliased alpha ramps at their edges; 128 (half opacity) keeps the
    # boundary where the stroke visibly is, while mask2rle-style masks (0/255) are unaffected.
    return alpha >= _ALPHA_THRESHOLD
