"""Fixtures for the evaluation tests: pycocotools as the reference, JSON writers, the eval tool.

The tiny trained run (``tiny_run``) is shared by all tests: tests/conftest.py."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ROOT = Path(__file__).resolve().parents[2]


def reference_cocoeval(gt: dict, results: list[dict], task: str):
    """pycocotools exactly as Detectron2 calls it (for segm the boxes are dropped so mask areas count)."""
    res = copy.deepcopy(results)
    for r in res:
        r.pop("bbox" if task == "segm" else "segmentation", None)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(res), task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.fixture
def reference():
    """``reference(gt, results, task)`` -> pycocotools' COCOeval after summarize()."""
    return reference_cocoeval


@pytest.fixture
def write_json(tmp_path):
    """``write_json(name, obj)`` -> path of ``tmp_path/name``."""

    def _write(name: str, obj) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        return str(path)

    return _write


@pytest.fixture
def run_eval_tool():
    """``run_eval_tool(*overrides)`` -> CompletedProcess of ``python tools/eval.py ...`` (repo root)."""

    def _run(*overrides: str):
        return subprocess.run(
            [sys.executable, "tools/eval.py", *overrides],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return _run


def _polygons_to_rle(results: list[dict], gt: dict) -> list[dict]:
    """What a polygon prediction means: its rasterization on the GT image size (pycocotools' frPyObjects)."""
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    out = copy.deepcopy(results)
    for r in out:
        if isinstance(r.get("segmentation"), list):
            h, w = sizes[r["image_id"]]
            rle = mask_util.merge(mask_util.frPyObjects(r["segmentation"], h, w))
            r["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return out


def _assert_stats_equal(ours: np.ndarray, ref: np.ndarray, tol: float = 1e-9) -> None:
    assert np.asarray(ours).shape == (12,)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=0, atol=tol)


@pytest.fixture
def polygons_to_rle():
    return _polygons_to_rle


@pytest.fixture
def assert_stats_equal():
    """``assert_stats_equal(ours, reference)``: the 12 COCO stats agree to 1e-9."""
    return _assert_stats_equal
