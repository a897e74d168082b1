"""Tests for the Label Studio brush RLE codec (maskseg_d2.data.labelstudio_rle)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from maskseg_d2.data import labelstudio_rle

VECTOR_VALUES = [1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 4, 4, 4, 4, 4, 4, 4, 4]
VECTOR_RLE = [0, 0, 0, 18, 57, 27, 252, 96, 32, 1, 0, 6, 0, 40, 0, 192, 3, 128, 17, 56, 32]


# ----------------------------------------------------------------------- slow reference (test only)
def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _reference_encode(values: list[int]) -> list[int]:
    """Naive bit-string encoder written from the format description, to cross-check the packer."""
    out = _bits(len(values), 32) + _bits(7, 5) + "".join(_bits(s - 1, 4) for s in (3, 4, 8, 16))
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        run, v = j - i, values[i]
        if run == 1:
            out += "0" + "00" + "000" + _bits(v, 8)
        elif run <= 8:
            out += "1" + "00" + _bits(run - 1, 3) + _bits(v, 8)
        elif run <= 16:
            out += "1" + "01" + _bits(run - 1, 4) + _bits(v, 8)
        elif run <= 256:
            out += "1" + "10" + _bits(run - 1, 8) + _bits(v, 8)
        else:
            left = run
            while left > 65536:
                out += "1" + "11" + _bits(65535, 16) + _bits(v, 8)
                left -= 65536
            out += "1" + "11" + _bits(left - 1, 16) + _bits(v, 8)
        i = j
    out += "0" * (8 - len(out) % 8)
    return [int(out[k : k + 8], 2) for k in range(0, len(out), 8)]


def _stream(header_num: int, chunks: str, word_size: int = 8) -> list[int]:
    """Hand-built stream: header + chunk bits given as a '0'/'1' string, zero padded."""
    bits = _bits(header_num, 32) + _bits(word_size - 1, 5) + "".join(_bits(s - 1, 4) for s in (3, 4, 8, 16))
    bits += chunks
    bits += "0" * (-len(bits) % 8)
    return [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]


# ------------------------------------------------------------------------------------------ tests
def test_reference_vector_encodes_exactly():
    assert labelstudio_rle.encode(np.array(VECTOR_VALUES, np.uint8)) == VECTOR_RLE


def test_reference_vector_decodes_exactly():
    out = labelstudio_rle.decode(VECTOR_RLE)
    assert out.dtype == np.uint8
    assert out.tolist() == VECTOR_VALUES


def test_decode_accepts_bytes_and_numpy():
    assert labelstudio_rle.decode(bytes(VECTOR_RLE)).tolist() == VECTOR_VALUES
    assert labelstudio_rle.decode(np.array(VECTOR_RLE, np.int64)).tolist() == VECTOR_VALUES


@pytest.mark.parametrize(
    "length", [1, 2, 8, 9, 16, 17, 256, 257, 65536, 65537, 65538, 131072, 131073, 200001]
)
def test_single_run_matches_reference_and_round_trips(length):
    values = np.full(length, 200, np.uint8)
    rle = labelstudio_rle.encode(values)
    assert rle == _reference_encode(values.tolist())
    assert np.array_equal(labelstudio_rle.decode(rle), values)


def test_run_of_257_uses_the_16_bit_field():
    rle = labelstudio_rle.encode(np.full(257, 3, np.uint8))
    # header (53 bits) + flag 1, k 3, n 256 (16 bits), value 3 (8 bits) = 80 bits -> 10 bytes + 1 pad byte
    assert len(rle) == 11
    assert labelstudio_rle.decode(rle).tolist() == [3] * 257


def test_random_arrays_match_reference_encoder():
    rng = np.random.default_rng(1)
    for trial in range(30):
        n = int(rng.integers(1, 600))
        runs = rng.integers(1, 40, size=n // 3 + 1)
        vals = rng.integers(0, 4 if trial % 2 else 256, size=runs.size)
        values = np.repeat(vals, runs)[:n].astype(np.uint8)
        rle = labelstudio_rle.encode(values)
        assert rle == _reference_encode(values.tolist())
        assert np.array_equal(labelstudio_rle.decode(rle), values)


def test_byte_aligned_stream_gets_a_full_zero_pad_byte():
    # 53 header bits + 15 (run of 10, k=1) + 14 + 14 (two singletons) = 96 bits: already aligned,
    # yet Label Studio's encoder appends a whole zero byte
    values = [5] * 10 + [1, 2]
    rle = labelstudio_rle.encode(np.array(values, np.uint8))
    assert len(rle) == 13 and rle[-1] == 0
    assert rle == _reference_encode(values)
    assert labelstudio_rle.decode(rle).tolist() == values


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 5), (17, 31), (64, 48), (120, 160)])
def test_mask_round_trip_random(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for p in (0.05, 0.5, 0.95):
        mask = rng.random(shape) < p
        rle = labelstudio_rle.mask_to_brush_rle(mask)
        assert np.array_equal(labelstudio_rle.rle_to_mask(rle, *shape), mask)


@pytest.mark.parametrize("fill", [False, True])
def test_mask_round_trip_constant(fill):
    mask = np.full((300, 300), fill)  # one run of 360000 values: split into 65536-value chunks
    rle = labelstudio_rle.mask_to_brush_rle(mask)
    assert np.array_equal(labelstudio_rle.rle_to_mask(rle, 300, 300), mask)
    assert len(rle) < 40


def test_mask_to_rle_matches_encoding_the_rgba_bytes():
    rng = np.random.default_rng(5)
    mask = np.zeros((40, 60), bool)
    mask[10:30, 5:50] = True
    mask |= rng.random(mask.shape) < 0.02
    rgba = np.repeat(mask.ravel().astype(np.uint8) * 255, 4)
    assert labelstudio_rle.mask_to_brush_rle(mask) == labelstudio_rle.encode(rgba)
    assert labelstudio_rle.mask_to_brush_rle(mask.astype(np.uint8)) == labelstudio_rle.encode(rgba)


def test_decode_literal_chunks():
    # JS-style literal chunk: flag 0, k 1 (4-bit n), n 4 -> 5 raw values; then a repeat of 3 zeros
    chunks = "0" + "01" + _bits(4, 4) + "".join(_bits(v, 8) for v in (9, 8, 7, 6, 5))
    chunks += "1" + "00" + _bits(2, 3) + _bits(0, 8)
    assert labelstudio_rle.decode(_stream(8, chunks)).tolist() == [9, 8, 7, 6, 5, 0, 0, 0]


def test_rle_to_mask_thresholds_alpha_at_128():
    rgba = np.array([[10, 20, 30, 127], [10, 20, 30, 128], [255, 255, 255, 0], [0, 0, 0, 255]], np.uint8)
    rle = labelstudio_rle.encode(rgba.ravel())
    assert labelstudio_rle.rle_to_mask(rle, 2, 2).tolist() == [[False, True], [False, True]]


def test_truncated_stream_raises():
    rle = labelstudio_rle.mask_to_brush_rle(np.eye(20, dtype=bool))
    with pytest.raises(ValueError, match="truncated"):
        labelstudio_rle.decode(rle[: len(rle) // 2])


def test_header_too_short_raises():
    with pytest.raises(ValueError, match="truncated"):
        labelstudio_rle.decode([0, 0, 0, 18, 57])
    with pytest.raises(ValueError):
        labelstudio_rle.decode([])


def test_count_larger_than_stream_raises():
    rle = list(VECTOR_RLE)
    rle[3] = 200  # declares 200 values, the stream holds 18
    with pytest.raises(ValueError, match="truncated"):
        labelstudio_rle.decode(rle)


def test_bad_word_size_raises():
    with pytest.raises(ValueError, match="word size"):
        labelstudio_rle.decode(_stream(1, "1" + "00" + "000" + _bits(1, 16), word_size=16))


def test_run_overrunning_the_count_raises():
    with pytest.raises(ValueError, match="overruns"):
        labelstudio_rle.decode(_stream(3, "1" + "00" + _bits(7, 3) + _bits(1, 8)))


def test_values_out_of_range_raise():
    with pytest.raises(ValueError):
        labelstudio_rle.decode([0, 0, 0, 1, 300])
    with pytest.raises(ValueError):
        labelstudio_rle.encode(np.array([1, 256]))


def test_rle_to_mask_size_mismatch_names_both_sizes():
    rle = labelstudio_rle.mask_to_brush_rle(np.zeros((4, 5), bool))
    assert labelstudio_rle.rle_to_mask(rle, 5, 4).shape == (5, 4)  # same value count: fine
    with pytest.raises(ValueError, match=r"holds 80 values but a 4x6 RGBA image needs 96"):
        labelstudio_rle.rle_to_mask(rle, 4, 6)


def test_large_mask_decodes_fast():
    h, w = 768, 1024
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - 300) ** 2 + (xx - 500) ** 2 < 200**2) | ((yy > 600) & (yy < 700) & (xx > 100) & (xx < 900))
    rle = labelstudio_rle.mask_to_brush_rle(mask)
    start = time.perf_counter()
    out = labelstudio_rle.rle_to_mask(rle, h, w)
    elapsed = time.perf_counter() - start
    assert np.array_equal(out, mask)
    assert elapsed < 1.0  # ~2 ms here; generous bound for slow CI machines
