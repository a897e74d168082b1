"""LabelMe importer: synthetic JSON files shaped like LabelMe 5.x writes them."""
from __future__ import annotations

import base64
import io
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.data import load_dataset, read_dataset
from maskseg_d2.data.labelme import CACHE_DIR, circle_polygon
from maskseg_d2.errors import UserError
from pycocotools import mask as mask_util

W, H = 80, 60


# ------------------------------------------------------------------------------------------ helpers


def image_bytes(suffix: str = ".jpg", w: int = W, h: int = H) -> bytes:
    ok, buf = cv2.imencode(suffix, np.full((h, w, 3), 127, np.uint8))
    assert ok
    return buf.tobytes()


def write_image(path: Path, w: int = W, h: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(path.suffix, w, h))
    return path


def shape(label, points, shape_type="polygon", group_id=None, mask=None) -> dict:
    return {"label": label, "points": [list(map(float, p)) for p in points], "group_id": group_id,
            "description": "", "shape_type": shape_type, "flags": {}, "mask": mask}


def write_labelme(path: Path, shapes, image_path="street.jpg", image_data=None, w=W, h=H) -> Path:
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
           "imageData": image_data,
           "imageHeight": h, "imageWidth": w}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


def png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")  # 0/1 values, like a bool array saved as L
    return base64.b64encode(buf.getvalue()).decode()


def decode_segmentation(ann: dict, h: int = H, w: int = W) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, dict):
        return mask_util.decode(seg).astype(bool)
    return rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], h, w)


def centres() -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def assert_one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "labelme"
    write_image(d / "street.jpg")
    return d


# ---------------------------------------------------------------------------------------- shapes


def test_polygon_rectangle_oriented(folder):
    poly = [(10, 10), (50, 12), (45, 40), (12, 35)]
    oriented = [(60, 30), (70, 35), (65, 45), (55, 40)]
    f = write_labelme(folder / "street.json", [
        shape("car", poly), shape("sign", [(75, 25), (60, 5)], "rectangle"),
        shape("car", oriented, "oriented_rectangle")])
    res = read_dataset(folder, fmt="labelme")
    assert res.thing_classes == ["car", "sign"]
    (d,) = res.dicts
    assert d["file_name"] == str(folder / "street.jpg") and (d["height"], d["width"]) == (H, W)
    assert d["image_id"] == str(f)
    car, sign, car2 = d["annotations"]
    assert [car["category_id"], sign["category_id"], car2["category_id"]] == [0, 1, 0]
    np.testing.assert_allclose(np.reshape(car["segmentation"][0], (-1, 2)), poly)
    np.testing.assert_allclose(sign["bbox"], [60, 5, 15, 20])
    x, y = centres()
    assert decode_segmentation(sign).sum() == 15 * 20
    assert np.array_equal(decode_segmentation(sign), (x > 60) & (x < 75) & (y > 5) & (y < 25))
    np.testing.assert_allclose(car2["bbox"], [55, 30, 15, 15])


def test_circle(folder):
    cx, cy, r = 40.0, 30.0, 20.0
    rim = (cx + r * 0.6, cy + r * 0.8)
    write_labelme(folder / "street.json", [shape("wheel", [(cx, cy), rim], "circle")])
    (ann,) = load_dataset(folder, fmt="labelme")[0]["annotations"]
    pts = np.reshape(ann["segmentation"][0], (-1, 2))
    np.testing.assert_allclose(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy), r)  # vertices on the circle
    n = len(pts)
    assert r * (1 - math.cos(math.pi / n)) < 0.5  # chord error below half a pixel (0.1 px by default)
    x, y = centres()
    assert iou(decode_segmentation(ann), (x - cx) ** 2 + (y - cy) ** 2 <= r * r) > 0.97
    assert len(circle_polygon((0, 0), 0.1)) == 8


def test_mask_shape_pasted_at_top_left(folder):
    crop = np.zeros((12, 20), bool)
    crop[2:10, 3:18] = True
    crop[0, 0] = True
    x1, y1 = 30, 15
    write_labelme(folder / "street.json", [
        shape("car", [(x1, y1), (x1 + 19, y1 + 11)], "mask", mask=png_b64(crop))])
    (ann,) = load_dataset(folder, fmt="labelme")[0]["annotations"]
    expected = np.zeros((H, W), bool)
    expected[y1:y1 + 12, x1:x1 + 20] = crop
    assert isinstance(ann["segmentation"], dict)
    np.testing.assert_array_equal(decode_segmentation(ann), expected)
    assert ann["bbox"] == [30.0, 15.0, 18.0, 10.0]


def test_group_id_union(folder):
    a = [(5, 5), (20, 5), (20, 20), (5, 20)]
    b = [(30, 5), (45, 5), (45, 20), (30, 20)]
    crop = np.ones((10, 10), bool)
    f = write_labelme(folder / "street.json", [
        shape("car", a, group_id=1), shape("car", b, group_id=1),       # one car in two parts (polygons)
        shape("sign", a, group_id=1),                                   # same group, other label: separate
        shape("car", b),                                                # no group: its own instance
        shape("car", [(70, 50), (60, 40)], "rectangle", group_id=2),    # rectangle + mask -> one RLE
        shape("car", [(50, 30), (59, 39)], "mask", group_id=2, mask=png_b64(crop))])
    res = read_dataset(f, fmt="labelme")
    anns = res.dicts[0]["annotations"]
    assert len(anns) == 4
    split_car, sign, lone_car, mixed = anns
    assert len(split_car["segmentation"]) == 2 and split_car["category_id"] == res.thing_classes.index("car")
    np.testing.assert_allclose(split_car["bbox"], [5, 5, 40, 15])
    assert sign["category_id"] == res.thing_classes.index("sign")
    assert len(lone_car["segmentation"]) == 1
    x, y = centres()
    expected = ((x > 60) & (x < 70) & (y > 40) & (y < 50)) | ((x > 50) & (x < 60) & (y > 30) & (y < 40))
    assert isinstance(mixed["segmentation"], dict)
    np.testing.assert_array_equal(decode_segmentation(mixed), expected)


def test_line_and_points_skipped_and_counted(folder, caplog):
    write_labelme(folder / "street.json", [
        shape("car", [(10, 10), (50, 12), (45, 40)]), shape("lane", [(0, 0), (10, 10)], "line"),
        shape("lane", [(0, 0), (10, 10), (20, 5)], "linestrip"), shape("tip", [(3, 3)], "point")])
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(folder, fmt="labelme")
    assert res.thing_classes == ["car"] and len(res.dicts[0]["annotations"]) == 1
    assert res.skipped == {"line shape": 1, "linestrip shape": 1, "point shape": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3" in warnings[0] and "shape 1" in warnings[0]


# ---------------------------------------------------------------------------------------- images


def test_windows_image_path(tmp_path):
    write_image(tmp_path / "images" / "sub" / "a.jpg")
    write_labelme(tmp_path / "labelme" / "a.json", [shape("car", [(1, 1), (9, 1), (9, 9)])],
                  image_path="..\\images\\sub\\a.jpg")
    (d,) = load_dataset(tmp_path / "labelme", fmt="labelme")
    assert Path(d["file_name"]) == tmp_path / "images" / "sub" / "a.jpg"


def test_embedded_image_data_decoded_once(tmp_path):
    data = base64.b64encode(image_bytes(".png")).decode()
    f = write_labelme(tmp_path / "labelme" / "photo.json", [shape("car", [(1, 1), (9, 1), (9, 9)])],
                      image_path="C:\\Users\\me\\Pictures\\photo.png", image_data=data)
    (d,) = load_dataset([f], fmt="labelme")
    cached = tmp_path / "labelme" / CACHE_DIR / "photo.png"
    assert d["file_name"] == str(cached) and cached.read_bytes() == base64.b64decode(data)
    mtime = cached.stat().st_mtime_ns
    load_dataset(tmp_path / "labelme", fmt="labelme")  # the cache folder is hidden: not searched for JSON
    assert cached.stat().st_mtime_ns == mtime


def test_missing_image(tmp_path):
    write_image(tmp_path / "labelme" / "street_01.jpg")
    f = write_labelme(tmp_path / "labelme" / "a.json", [], image_path="street_1.jpg")
    with pytest.raises(UserError) as e:
        load_dataset(tmp_path / "labelme", fmt="labelme")
    assert_one_line_error(e, str(f), "street_1.jpg", "closest: street_01.jpg")


def test_size_mismatch(folder):
    f = write_labelme(folder / "street.json", [], w=W + 1)
    with pytest.raises(UserError) as e:
        load_dataset(folder, fmt="labelme")
    assert_one_line_error(e, str(f), "81x60", "80x60")


# -------------------------------------------------------------------------------------------- errors


def test_two_point_polygon(folder):
    f = write_labelme(folder / "street.json",
                      [shape("car", [(1, 1), (9, 1), (9, 9)]), shape("car", [(1, 1), (5, 5)])])
    with pytest.raises(UserError) as e:
        load_dataset(folder, fmt="labelme")
    assert_one_line_error(e, str(f), "shape 1", "2 point(s)")


def test_unknown_label(folder):
    f = write_labelme(folder / "street.json", [shape("tree", [(1, 1), (9, 1), (9, 9)])])
    with pytest.raises(UserError) as e:
        load_dataset(folder, fmt="labelme", classes=["car"])
    assert_one_line_error(e, str(folder), "'tree' (1×", f"{f} shape 0", "class_map")


def test_not_labelme_and_truncated(folder):
    (folder / "street.json").write_text('{"shapes": [')
    with pytest.raises(UserError) as e:
        load_dataset(folder, fmt="labelme")
    assert_one_line_error(e, str(folder / "street.json"), "invalid JSON")
    (folder / "street.json").write_text('{"images": []}')
    with pytest.raises(UserError) as e:
        load_dataset(folder, fmt="labelme")
    assert_one_line_error(e, str(folder / "street.json"), "not a LabelMe file")
