"""EXIF orientation and resized photos: annotation sizes reconciled with the image as Detectron2 reads it."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from detectron2.data.detection_utils import read_image
from maskseg_d2.data import read_dataset
from maskseg_d2.data.images import EXIF_NOTE, RESCALE_NOTE, read_image_size, reconcile_size
from maskseg_d2.data.loading import LoadStats
from maskseg_d2.errors import UserError

RAW_W, RAW_H = 80, 60  # stored pixels; orientation 6 (rotate 90° clockwise) -> displayed 60 x 80
POLY = [(10, 20), (50, 22), (48, 70), (12, 66)]  # display pixels: x < 60, y < 80


@pytest.mark.parametrize("orientation", range(1, 9))
def test_size_matches_detectron2_read_image(tmp_path, tools, orientation):
    path = tools.write_photo(tmp_path / f"o{orientation}.jpg", RAW_W, RAW_H, orientation)
    assert read_image_size(path) == read_image(str(path), format="BGR").shape[:2]


def test_reconcile_kinds(tmp_path, tools):
    rotated = tools.write_photo(tmp_path / "rot.jpg", RAW_W, RAW_H, 6)
    stats = LoadStats("x")
    same = reconcile_size(rotated, 80, 60, "x: a", relative=True, stats=stats)
    assert (same.kind, same.size, same.scale) == ("same", (80, 60), (1.0, 1.0))
    rel = reconcile_size(rotated, 60, 80, "x: b", relative=True, stats=stats)  # recorded before rotation
    assert (rel.kind, rel.size, rel.canvas) == ("exif", (80, 60), (60, 80))
    np.testing.assert_allclose(rel.points(np.array([[80.0, 60.0]]), "w"), [[60.0, 80.0]])  # stretched
    absolute = reconcile_size(rotated, 60, 80, "x: c", relative=False, stats=stats)
    np.testing.assert_allclose(absolute.points(np.array([[50.0, 70.0]]), "w"), [[50.0, 70.0]])  # kept
    resized = reconcile_size(rotated, 160, 120, "x: d", relative=False, stats=stats)
    assert resized.kind == "rescaled" and resized.scale == (0.5, 0.5)
    assert stats.notes == {EXIF_NOTE: 2, RESCALE_NOTE: 1}
    with pytest.raises(UserError) as e:
        reconcile_size(rotated, 80, 80, "x: task 9", relative=True)
    assert "x: task 9" in str(e.value) and "80x80" in str(e.value) and "60x80" in str(e.value)


def _labelme(tmp_path, shapes, w, h, name="rot.jpg"):
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": name, "imageData": None,
           "imageHeight": h, "imageWidth": w}
    path = tmp_path / (name.rsplit(".", 1)[0] + ".json")
    path.write_text(json.dumps(doc))
    return path


def _shape(points, label="car", shape_type="polygon", **kw):
    return {"label": label, "points": [list(map(float, p)) for p in points], "group_id": None,
            "shape_type": shape_type, "flags": {}, **kw}


def test_labelme_on_exif_rotated_jpeg(tmp_path, tools):
    """LabelMe shows (and sizes) the photo upright: polygons are display pixels, sizes agree."""
    tools.write_photo(tmp_path / "rot.jpg", RAW_W, RAW_H, 6)
    res = read_dataset(_labelme(tmp_path, [_shape(POLY)], w=60, h=80), fmt="labelme")
    (d,) = res.dicts
    assert (d["height"], d["width"]) == (80, 60) == read_image(d["file_name"]).shape[:2]
    np.testing.assert_allclose(np.reshape(d["annotations"][0]["segmentation"][0], (-1, 2)), POLY)
    assert res.adjusted == {}


def test_labelme_size_recorded_before_rotation(tmp_path, tools, caplog):
    tools.write_photo(tmp_path / "rot.jpg", RAW_W, RAW_H, 6)
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(_labelme(tmp_path, [_shape(POLY)], w=RAW_W, h=RAW_H), fmt="labelme")
    (d,) = res.dicts
    assert (d["height"], d["width"]) == (80, 60)
    np.testing.assert_allclose(np.reshape(d["annotations"][0]["segmentation"][0], (-1, 2)), POLY)
    assert res.adjusted == {EXIF_NOTE: 1} and "EXIF-rotated" in caplog.text


def test_labelme_drawn_on_unrotated_photo_is_an_error(tmp_path, tools):
    tools.write_photo(tmp_path / "rot.jpg", RAW_W, RAW_H, 6)
    raw_poly = [(5, 5), (75, 5), (75, 50)]  # x up to 75: only fits the stored 80 x 60 pixels
    path = _labelme(tmp_path, [_shape(raw_poly)], w=RAW_W, h=RAW_H)
    with pytest.raises(UserError) as e:
        read_dataset(path, fmt="labelme")
    msg = str(e.value)
    assert str(path) in msg and "shape 0" in msg and "un-rotated" in msg and "exif_transpose" in msg


def test_labelstudio_size_recorded_before_rotation(tmp_path, tools):
    """Percentages are relative: they land on the displayed image whatever size was recorded."""
    tools.write_photo(tmp_path / "images" / "rot.jpg", RAW_W, RAW_H, 6)
    pts = [[x / 60 * 100, y / 80 * 100] for x, y in POLY]
    result = {"id": "p", "type": "polygonlabels", "original_width": RAW_W, "original_height": RAW_H,
              "value": {"points": pts, "polygonlabels": ["car"]}}
    tasks = [{"id": 3, "data": {"image": "/data/upload/1/0a1b2c3d-rot.jpg"},
              "annotations": [{"id": 1, "result": [result]}]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    res = read_dataset(tmp_path / "ls.json", tmp_path / "images", fmt="labelstudio")
    (d,) = res.dicts
    assert (d["height"], d["width"]) == (80, 60)
    np.testing.assert_allclose(np.reshape(d["annotations"][0]["segmentation"][0], (-1, 2)), POLY, atol=1e-9)
    assert res.adjusted == {EXIF_NOTE: 1}


def test_labelme_resized_photo_rescales_polygons_and_masks(tmp_path, tools):
    import base64
    import io

    from PIL import Image

    tools.write_photo(tmp_path / "small.jpg", 80, 60)
    crop = np.ones((20, 40), np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG")
    shapes = [_shape([(20, 20), (140, 20), (140, 100)]),
              _shape([(40, 60), (79, 79)], "sign", "mask", mask=base64.b64encode(buf.getvalue()).decode())]
    res = read_dataset(_labelme(tmp_path, shapes, w=160, h=120, name="small.jpg"), fmt="labelme")
    poly, mask = res.dicts[0]["annotations"]
    np.testing.assert_allclose(np.reshape(poly["segmentation"][0], (-1, 2)), [(10, 10), (70, 10), (70, 50)])
    expected = np.zeros((60, 80), bool)
    expected[30:40, 20:40] = True
    assert tools.iou(tools.annotation_mask(mask, 60, 80), expected) == 1.0
    assert res.adjusted == {RESCALE_NOTE: 1}


def test_exif_rotated_and_resized(tmp_path, tools):
    """Recorded before rotation at twice the size: LabelMe pixels halve, LS percentages just follow."""
    tools.write_photo(tmp_path / "rot.jpg", RAW_W, RAW_H, 6)
    double = [(2 * x, 2 * y) for x, y in POLY]  # drawn on the upright photo at 120 x 160
    res = read_dataset(_labelme(tmp_path, [_shape(double)], w=2 * RAW_W, h=2 * RAW_H), fmt="labelme")
    (d,) = res.dicts
    assert (d["height"], d["width"]) == (80, 60)
    np.testing.assert_allclose(np.reshape(d["annotations"][0]["segmentation"][0], (-1, 2)), POLY)
    assert res.adjusted == {EXIF_NOTE: 1, RESCALE_NOTE: 1}
    fix = reconcile_size(tmp_path / "rot.jpg", 2 * RAW_H, 2 * RAW_W, "x", relative=True)
    np.testing.assert_allclose(fix.points(np.array([[160.0, 120.0]]), "w"), [[60.0, 80.0]])
