"""``labelstudio.shape=auto``: a polygon where one outline holds the mask, a brush mask where it cannot.

The reference for "one part without holes" is SciPy's labelling (8-connected parts) and hole filling
(holes: background not 4-connected to the border), not our OpenCV code. The round trip goes through
our own importer, reading the task back as a Label Studio export would give it.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_util
from scipy import ndimage

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.predict import Detections
from maskseg_d2.predict.annotations import is_simple_mask, labelstudio_results, labelstudio_task

H, W = 60, 80


def _scipy_simple(mask: np.ndarray) -> bool:
    parts = ndimage.label(mask, structure=np.ones((3, 3)))[1]
    return parts == 1 and bool((ndimage.binary_fill_holes(mask) == mask).all())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(1, 5), st.integers(1, 5),
                          st.booleans()), min_size=1, max_size=6))
def test_is_simple_mask_agrees_with_scipy(boxes):
    mask = np.zeros((12, 12), bool)
    for y, x, h, w, add in boxes:  # drawn and erased boxes: parts, holes, diagonal touches, border holes
        mask[y:y + h, x:x + w] = add
    assert is_simple_mask(mask) == _scipy_simple(mask)


def _masks() -> dict[str, np.ndarray]:
    blob = np.zeros((H, W), np.uint8)
    cv2.ellipse(blob, (25, 30), (14, 10), 20, 0, 360, 1, -1)
    two = np.zeros((H, W), np.uint8)
    cv2.circle(two, (15, 15), 8, 1, -1)
    cv2.circle(two, (60, 40), 7, 1, -1)  # e.g. a car split by a sign pole in front of it
    ring = np.zeros((H, W), np.uint8)
    cv2.circle(ring, (40, 30), 18, 1, -1)
    cv2.circle(ring, (40, 30), 7, 0, -1)
    return {"blob": blob.astype(bool), "two parts": two.astype(bool), "ring": ring.astype(bool)}


def _dets(masks: list[np.ndarray]) -> Detections:
    boxes = np.array([[0, 0, W, H]] * len(masks), np.float32)
    return Detections(boxes, np.linspace(0.9, 0.6, len(masks)).astype(np.float32),
                      np.zeros(len(masks), np.int64), np.stack(masks))


def _read_back(tmp_path, results: list[dict]) -> list[np.ndarray]:
    Image.new("RGB", (W, H)).save(tmp_path / "photo.png")
    task = labelstudio_task("/data/local-files/?d=photo.png", results, np.ones(len(results)), "m")
    task["annotations"] = [{"id": 1, "result": task.pop("predictions")[0]["result"]}]
    (tmp_path / "export.json").write_text(json.dumps([dict(task, id=1)]))
    (record,) = load_dataset(tmp_path / "export.json", tmp_path, fmt="labelstudio", classes=["car"])
    out = []
    for a in record["annotations"]:
        seg = a["segmentation"]
        out.append(mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool) if isinstance(seg, dict)
                   else rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], H, W))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_auto_is_a_polygon_for_one_part_and_brush_otherwise(tmp_path):
    masks = _masks()
    results = labelstudio_results(_dets(list(masks.values())), ["car"], from_name="poly", brush_from_name="brush")
    assert [(r["type"], r["from_name"]) for r in results] == [
        ("polygonlabels", "poly"), ("brushlabels", "brush"), ("brushlabels", "brush")]
    back = _read_back(tmp_path, results)
    ious = [_iou(m, b) for m, b in zip(masks.values(), back)]
    assert ious[0] >= 0.95 and ious[1:] == [1.0, 1.0], ious  # brush RLE is exact


def test_polygon_loses_what_auto_keeps(tmp_path):
    """The defect auto fixes: one polygon per instance drops the second part and fills the hole."""
    masks = _masks()
    results = labelstudio_results(_dets(list(masks.values())), ["car"], shape="polygon")
    back = _read_back(tmp_path, results)
    ious = {name: _iou(m, b) for (name, m), b in zip(masks.items(), back)}
    assert ious["two parts"] < 0.7 and ious["ring"] < 0.9 and ious["blob"] >= 0.95, ious


def test_brush_from_name_defaults_to_from_name():
    results = labelstudio_results(_dets([_masks()["ring"]]), ["car"], from_name="label")
    assert [(r["type"], r["from_name"]) for r in results] == [("brushlabels", "label")]
    with pytest.raises(ValueError, match="shape='rect'"):
        labelstudio_results(_dets([_masks()["ring"]]), ["car"], shape="rect")
