"""Tests for the synthetic demo dataset (maskseg_d2.demo).

The annotations are rasterised with a small helper of this file (pixel-corner convention: a pixel
belongs to a shape when its centre (j + 0.5, i + 0.5) is inside), independent of the importers.
"""
from __future__ import annotations

import base64
import json
import math
import re
import urllib.parse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskseg_d2 import demo
from maskseg_d2.data.labelstudio_rle import rle_to_mask

NUM_IMAGES = 18
W, H = 256, 192


# ------------------------------------------------------------------------------------ rasterising
def _poly_mask(points, h: int, w: int) -> np.ndarray:
    """Even-odd fill of a polygon (pixel-corner coordinates) sampled at pixel centres."""
    pts = np.asarray(points, float)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), bool)
    for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        if ay == by:
            continue
        crosses = (ay > ys) != (by > ys)
        x_at = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (xs < x_at)
    return inside


def _disc_mask(cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _ls_mask(result: dict) -> np.ndarray:
    h, w, v = result["original_height"], result["original_width"], result["value"]
    if result["type"] == "brushlabels":
        assert v["format"] == "rle"
        return rle_to_mask(v["rle"], h, w)
    if result["type"] == "polygonlabels":
        return _poly_mask([[x * w / 100, y * h / 100] for x, y in v["points"]], h, w)
    assert result["type"] == "rectanglelabels"
    x, y, bw, bh = v["x"] * w / 100, v["y"] * h / 100, v["width"] * w / 100, v["height"] * h / 100
    t = math.radians(v["rotation"])
    corners = [[x, y], [x + bw * math.cos(t), y + bw * math.sin(t)],
               [x + bw * math.cos(t) - bh * math.sin(t), y + bw * math.sin(t) + bh * math.cos(t)],
               [x - bh * math.sin(t), y + bh * math.cos(t)]]
    return _poly_mask(corners, h, w)


def _lm_shape_mask(shape: dict, h: int, w: int) -> np.ndarray:
    pts, kind = shape["points"], shape["shape_type"]
    if kind == "polygon":
        return _poly_mask(pts, h, w)
    if kind == "rectangle":
        (x1, y1), (x2, y2) = pts
        return _poly_mask([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], h, w)
    if kind == "circle":
        (cx, cy), (px, py) = pts
        return _disc_mask(cx, cy, math.hypot(px - cx, py - cy), h, w)
    assert kind == "mask"
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(shape["mask"]), np.uint8), cv2.IMREAD_UNCHANGED) > 0
    (x1, y1), (x2, y2) = [[round(c) for c in p] for p in pts]
    assert crop.shape == (y2 - y1 + 1, x2 - x1 + 1)
    out = np.zeros((h, w), bool)
    out[y1 : y2 + 1, x1 : x2 + 1] = crop
    return out


def _lm_instances(doc: dict) -> list[np.ndarray]:
    """Union shapes with the same (label, group_id); shapes without group_id are their own instance."""
    h, w = doc["imageHeight"], doc["imageWidth"]
    instances: dict = {}
    for i, shape in enumerate(doc["shapes"]):
        key = (shape["label"], shape["group_id"]) if shape["group_id"] is not None else ("single", i)
        mask = _lm_shape_mask(shape, h, w)
        instances[key] = instances[key] | mask if key in instances else mask
    return list(instances.values())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo_a")
    summary = demo.make_demo_dataset(out, num_images=NUM_IMAGES, width=W, height=H, seed=0)
    return out, summary


def _load(out: Path):
    tasks = json.loads((out / "labelstudio.json").read_text(encoding="utf-8"))
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    return tasks, truth


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- tests
def test_same_seed_gives_identical_bytes(dataset, tmp_path):
    out, _ = dataset
    demo.make_demo_dataset(tmp_path, num_images=NUM_IMAGES, width=W, height=H, seed=0)
    first, second = _files(out), _files(tmp_path)
    assert sorted(first) == sorted(second)
    assert len(first) == 2 * NUM_IMAGES + 3
    for name, data in first.items():
        assert second[name] == data, name


def test_different_seed_differs(dataset, tmp_path):
    out, _ = dataset
    demo.make_demo_dataset(tmp_path, num_images=4, width=W, height=H, seed=1)
    assert (tmp_path / "labelstudio.json").read_bytes() != (out / "labelstudio.json").read_bytes()
    other = _files(tmp_path / "images")
    ours = _files(out / "images")
    assert not set(other.values()) & set(ours.values())


def test_image_files_and_names(dataset):
    out, _ = dataset
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == NUM_IMAGES
    assert sum(not n.isascii() for n in names) == 1
    assert any(" " in n and n.isascii() for n in names)
    assert sum(n.startswith("campus_") for n in names) >= NUM_IMAGES - 3
    for name in names:
        img = cv2.imdecode(np.fromfile(out / "images" / name, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (H, W, 3)
        assert img.std() > 10  # textured, not flat


def test_labelstudio_export_shape(dataset):
    out, _ = dataset
    tasks, truth = _load(out)
    assert [t["id"] for t in tasks] == list(range(1, NUM_IMAGES + 1))
    names = {im["id"]: im["file_name"] for im in truth["images"]}
    for task in tasks:
        image = task["data"]["image"]
        assert re.match(r"^/data/upload/1/[0-9a-f]{8}-", image)
        assert task["file_upload"] == image.rsplit("/", 1)[1]
        upload_name = task["file_upload"][9:]
        assert upload_name == urllib.parse.quote(names[task["id"]].replace(" ", "_"))
        assert " " not in image and image.isascii()
        assert task["total_annotations"] == 1 and task["project"] == 1
        (ann,) = task["annotations"]
        assert ann["task"] == task["id"] and ann["was_cancelled"] is False
        assert ann["result_count"] == len(ann["result"])
        for r in ann["result"]:
            assert len(r["id"]) == 10
            assert (r["from_name"], r["to_name"], r["origin"]) == ("label", "image", "manual")
            assert (r["original_width"], r["original_height"], r["image_rotation"]) == (W, H, 0)
            assert r["value"][r["type"]] in (["car"], ["sign board"])
    assert any("%C3%A9" in t["data"]["image"] for t in tasks)


def test_every_annotation_type_is_present(dataset):
    out, summary = dataset
    tasks, _ = _load(out)
    results = [r for t in tasks for r in t["annotations"][0]["result"]]
    types = Counter(r["type"] for r in results)
    assert set(types) == {"polygonlabels", "rectanglelabels", "brushlabels"}
    rotations = [r["value"]["rotation"] for r in results if r["type"] == "rectanglelabels"]
    assert any(rot != 0 for rot in rotations) and all(0 <= rot < 360 for rot in rotations)
    assert all(r["value"]["closed"] is True for r in results if r["type"] == "polygonlabels")
    lm_types: Counter = Counter()
    group_sizes: Counter = Counter()
    for path in (out / "labelme").glob("*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for s in doc["shapes"]:
            lm_types[s["shape_type"]] += 1
            if s["group_id"] is not None:
                assert isinstance(s["group_id"], int)
                group_sizes[(path.name, s["group_id"], s["label"])] += 1
    assert {"polygon", "rectangle", "circle", "mask"} <= set(lm_types)
    assert group_sizes and all(n == 2 for n in group_sizes.values())
    assert dict(types) == {k: v for k, v in summary["labelstudio_types"].items() if v}
    assert dict(lm_types) == {k: v for k, v in summary["labelme_types"].items() if v}


def test_labelme_files(dataset):
    out, _ = dataset
    _, truth = _load(out)
    for im in truth["images"]:
        doc = json.loads((out / "labelme" / f"{Path(im['file_name']).stem}.json").read_text(encoding="utf-8"))
        assert doc["version"] == "5.5.0" and doc["imageData"] is None and doc["flags"] == {}
        assert doc["imagePath"] == f"../images/{im['file_name']}"
        assert (doc["imageWidth"], doc["imageHeight"]) == (W, H)
        for s in doc["shapes"]:
            assert set(s) == {"label", "points", "group_id", "description", "shape_type", "flags", "mask"}
            assert (s["mask"] is not None) == (s["shape_type"] == "mask")
            assert all(isinstance(c, float) for p in s["points"] for c in p)


def test_negative_image_exists(dataset):
    out, summary = dataset
    tasks, truth = _load(out)
    annotated = {a["image_id"] for a in truth["annotations"]}
    negatives = [t for t in tasks if t["annotations"][0]["result"] == []]
    assert negatives and summary["num_negative"] == len(negatives)
    for task in negatives:
        assert task["id"] not in annotated
        name = truth["images"][task["id"] - 1]["file_name"]
        doc = json.loads((out / "labelme" / f"{Path(name).stem}.json").read_text(encoding="utf-8"))
        assert doc["shapes"] == []


def test_truth_is_valid_coco(dataset):
    out, summary = dataset
    _, truth = _load(out)
    assert truth["categories"] == [{"id": 1, "name": "car", "supercategory": "campus"},
                                   {"id": 2, "name": "sign board", "supercategory": "campus"}]
    assert [im["id"] for im in truth["images"]] == list(range(1, NUM_IMAGES + 1))
    counts = Counter()
    for ann in truth["annotations"]:
        m = mask_util.decode(ann["segmentation"])
        assert m.shape == (H, W) and ann["iscrowd"] == 0
        assert ann["area"] == m.sum() >= demo.MIN_VISIBLE_PX
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        counts[ann["category_id"]] += 1
    assert counts == {1: summary["instances"]["car"], 2: summary["instances"]["sign board"]}


def test_both_formats_match_the_true_visible_masks(dataset):
    out, _ = dataset
    tasks, truth = _load(out)
    by_image: dict[int, list[np.ndarray]] = {}
    for ann in truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(mask_util.decode(ann["segmentation"]).astype(bool))
    n_checked = 0
    for task in tasks:
        true_masks = by_image.get(task["id"], [])
        results = task["annotations"][0]["result"]
        assert len(results) == len(true_masks)
        for r, true in zip(results, true_masks, strict=True):  # same order in both files
            iou = _iou(_ls_mask(r), true)
            assert iou >= 0.9, (task["id"], r["type"], iou)
            if r["type"] == "brushlabels":
                assert iou == 1.0
        name = truth["images"][task["id"] - 1]["file_name"]
        doc = json.loads((out / "labelme" / f"{Path(name).stem}.json").read_text(encoding="utf-8"))
        lm = _lm_instances(doc)
        assert len(lm) == len(true_masks)
        for mask, true in zip(lm, true_masks, strict=True):
            assert _iou(mask, true) >= 0.9, (name, _iou(mask, true))
            n_checked += 1
    assert n_checked >= NUM_IMAGES


def test_render_scene_objects():
    rng = np.random.default_rng(3)
    image, objects = demo.render_scene(rng, 200, 150, num_objects=4, variants=demo.VARIANTS[:4])
    assert image.shape == (150, 200, 3) and image.dtype == np.uint8
    assert objects
    cover = np.zeros((150, 200), bool)
    for obj in objects:
        assert obj.label in demo.CLASSES
        assert obj.kind in ("brush", "rectangle", "polygon")
        assert obj.visible_mask.dtype == bool and not (obj.visible_mask & ~obj.full_mask).any()
        assert not (obj.visible_mask & cover).any()  # visible parts never overlap
        cover |= obj.visible_mask
        assert obj.visible_mask.sum() >= max(demo.MIN_VISIBLE_PX, 0.3 * obj.full_mask.sum())
        if obj.kind == "polygon":
            assert _iou(_poly_mask(obj.polygon, 150, 200), obj.visible_mask) >= 0.9
        if obj.kind == "rectangle":
            assert _iou(_poly_mask(obj.board_corners(), 150, 200), obj.visible_mask) >= 0.95


def test_render_scene_is_deterministic():
    a_img, a_obj = demo.render_scene(np.random.default_rng(7), 128, 96)
    b_img, b_obj = demo.render_scene(np.random.default_rng(7), 128, 96)
    assert np.array_equal(a_img, b_img)
    assert [o.label for o in a_obj] == [o.label for o in b_obj]


def test_regenerating_removes_stale_files(tmp_path):
    demo.make_demo_dataset(tmp_path, num_images=5, width=96, height=64, seed=2)
    demo.make_demo_dataset(tmp_path, num_images=3, width=96, height=64, seed=2)
    assert len(list((tmp_path / "images").iterdir())) == 3
    assert len(list((tmp_path / "labelme").iterdir())) == 3
    params = json.loads((tmp_path / "demo_params.json").read_text())
    assert (params["num_images"], params["seed"], params["width"], params["height"]) == (3, 2, 96, 64)
