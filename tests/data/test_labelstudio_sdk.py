"""Label Studio exports made by label-studio-sdk itself: brush RLE from its encoder, JSON_MIN and COCO from
its Converter (the code the Label Studio server runs on export), on unicode/spaced names and an EXIF-rotated
JPEG. Our three importers must give the drawn instances back.

``integration``: the SDK is pip-installed into its own venv on first use (tests/data/conftest.py ``ls_sdk``), so
these need the package registry once; ``make test-fast`` leaves them out.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskseg_d2.data import labelstudio_rle
from maskseg_d2.data import read_dataset

pytestmark = pytest.mark.integration

CLASSES = ["car", "sign board"]
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="car"/><Label value="sign board"/></PolygonLabels>
<RectangleLabels name="rect" toName="image"><Label value="car"/><Label value="sign board"/></RectangleLabels>
<BrushLabels name="brush" toName="image"><Label value="car"/><Label value="sign board"/></BrushLabels>
<KeyPointLabels name="kp" toName="image"><Label value="car" model_index="0"/></KeyPointLabels>
<Choices name="ch" toName="image"><Choice value="day"/><Choice value="night"/></Choices></View>"""
# The SDK's COCO export relabels every class as "default" when the config has KeyPointLabels (SDK 2.1.2),
# so the COCO export is made from the same project without the keypoint tag (its regions are then left out).
CONFIG_COCO = CONFIG.replace('<KeyPointLabels name="kp" toName="image"><Label value="car" model_index="0"/>'
                             '</KeyPointLabels>\n', "")

SDK_SCRIPT = r"""
import json, os, sys
import numpy as np
spec = json.load(open(sys.argv[1], encoding="utf-8"))
out = sys.argv[2]
os.environ["LOCAL_FILES_DOCUMENT_ROOT"] = spec["document_root"]
from label_studio_sdk.converter import Converter, brush
for task in spec["tasks"]:
    for ann in task["annotations"]:
        for res in ann["result"]:
            if "mask_npy" in res["value"]:
                mask = np.load(res["value"].pop("mask_npy"))
                res["value"].update(format="rle", rle=brush.mask2rle((mask * 255).astype(np.uint8)))
with open(os.path.join(out, "export.json"), "w", encoding="utf-8") as f:
    json.dump(spec["tasks"], f, ensure_ascii=False)
for fmt, config in (("JSON_MIN", spec["config"]), ("COCO", spec["config_coco"])):
    conv = Converter(config, project_dir=None, upload_dir=spec["upload_dir"], download_resources=False)
    conv.convert(os.path.join(out, "export.json"), os.path.join(out, fmt.lower()), fmt, is_dir=False)
vectors = {}
for path in spec["vectors"]:
    arr = np.load(path)
    if arr.ndim == 2:
        vectors[path] = {"encoded": brush.mask2rle(arr.astype(np.uint8))}
    else:
        vectors[path] = {"encoded": brush.encode_rle(arr.ravel().astype(int))}
for path, rle in spec["decode"].items():
    vectors[path] = {"decoded": brush.decode_rle(rle).tolist()}
print(json.dumps(vectors))
"""

# ---------------------------------------------------------------------------------- the scenario
EXIF_W, EXIF_H = 72, 96  # display size of "my photo été.jpg" (stored 96 x 72, EXIF orientation 6)
W, H = 96, 72


def disc(cx, cy, r, h, w):
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def block(y0, y1, x0, x1, h, w):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def rotated_corners(x, y, w, h, deg):
    """Label Studio's rectangle: (x, y) is the top-left corner, rotation clockwise on screen about it."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [(x, y), (x + w * c, y + w * s), (x + w * c - h * s, y + w * s + h * c), (x - h * s, y + h * c)]


CAR_POLY = [(8, 10), (60, 14), (56, 50), (10, 46)]          # on the EXIF photo (display pixels)
SIGN_RECT = (20, 55, 30, 16, 20)                            # x, y, w, h, rotation on the EXIF photo
STREET_CAR = [(5, 5), (40, 8), (38, 30), (6, 28)]           # on "street 1.png"
STREET_SIGN = (50, 10, 30, 40, 0)


def poly_result(rid, points, label, w, h):
    return {"id": rid, "type": "polygonlabels", "from_name": "poly", "to_name": "image", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"points": [[x / w * 100, y / h * 100] for x, y in points], "closed": True,
                      "polygonlabels": [label]}}


def rect_result(rid, rect, label, w, h):
    x, y, bw, bh, rot = rect
    return {"id": rid, "type": "rectanglelabels", "from_name": "rect", "to_name": "image", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x / w * 100, "y": y / h * 100, "width": bw / w * 100, "height": bh / h * 100,
                      "rotation": rot, "rectanglelabels": [label]}}


def brush_result(rid, npy, label, w, h):
    return {"id": rid, "type": "brushlabels", "from_name": "brush", "to_name": "image", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"mask_npy": str(npy), "brushlabels": [label]}}


def ann(aid, results, created, **kw):
    return {"id": aid, "completed_by": 1, "was_cancelled": False, "ground_truth": False, "lead_time": 2.0,
            "created_at": created, "updated_at": created, "result": results, **kw}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, ls_sdk, tools):
    """Photos, the JSON export (SDK brush RLE) and the SDK's JSON_MIN and COCO exports of it."""
    root = tmp_path_factory.mktemp("ls_sdk")
    photos = root / "photos"
    tools.write_photo(photos / "my photo été.jpg", EXIF_H, EXIF_W, orientation=6)  # stored 96 wide
    for name in ("street 1.png", "sub/cars.jpg", "unlabelled.jpg", "negative.jpg"):
        tools.write_photo(photos / name, W, H, seed=len(name))
    upload = root / "ls_media" / "upload"  # Label Studio's copies: <8 hex>-<name>, spaces -> _
    uploads = {"my photo été.jpg": "0a1b2c3d-my_photo_%C3%A9t%C3%A9.jpg",
               "street 1.png": "e97d4735-street_1.png", "unlabelled.jpg": "5f6e7d8c-unlabelled.jpg",
               "negative.jpg": "1234abcd-negative.jpg"}
    for name, stored in uploads.items():
        (upload / "3").mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / name, upload / "3" / stored)
    car_brush, sign_brush = disc(36, 80, 10, EXIF_H, EXIF_W), block(20, 50, 30, 80, H, W)
    np.save(root / "car_brush.npy", car_brush)
    np.save(root / "sign_brush.npy", sign_brush)
    url = {n: f"/data/upload/3/{s}" for n, s in uploads.items()}
    keypoint = {"id": "k", "type": "keypointlabels", "from_name": "kp", "to_name": "image",
                "original_width": EXIF_W, "original_height": EXIF_H,
                "value": {"x": 50, "y": 50, "width": 1, "keypointlabels": ["car"]}}
    choice = {"id": "c", "type": "choices", "from_name": "ch", "to_name": "image",
              "value": {"choices": ["day"]}}
    tasks = [
        {"id": 11, "data": {"image": url["my photo été.jpg"]}, "annotations": [
            ann(101, [poly_result("a", CAR_POLY, "car", EXIF_W, EXIF_H),
                      rect_result("b", SIGN_RECT, "sign board", EXIF_W, EXIF_H),
                      brush_result("c", root / "car_brush.npy", "car", EXIF_W, EXIF_H), keypoint, choice],
                "2024-05-02T10:00:00.000000Z"),
            ann(102, [poly_result("x", STREET_CAR, "sign board", EXIF_W, EXIF_H)], "2024-05-09T10:00:00Z",
                was_cancelled=True)]},
        {"id": 12, "data": {"image": url["street 1.png"]}, "annotations": [
            ann(201, [poly_result("d", STREET_CAR, "sign board", W, H)], "2024-05-01T10:00:00Z"),
            ann(202, [poly_result("e", STREET_CAR, "car", W, H),
                      rect_result("f", STREET_SIGN, "sign board", W, H)], "2024-05-03T10:00:00Z",
                ground_truth=True)]},
        {"id": 13, "data": {"image": "/data/local-files/?d=photos/sub/cars.jpg"}, "annotations": [
            ann(301, [brush_result("g", root / "sign_brush.npy", "sign board", W, H)],
                "2024-05-02T10:00:00Z")]},
        {"id": 14, "data": {"image": url["unlabelled.jpg"]}, "annotations": []},
        {"id": 16, "data": {"image": url["negative.jpg"]},
         "annotations": [ann(601, [], "2024-05-02T10:00:00Z")]},
    ]
    vectors = _codec_vectors(root)
    spec = {"config": CONFIG, "config_coco": CONFIG_COCO, "upload_dir": str(upload),
            "document_root": str(root), "tasks": tasks,
            "vectors": [str(p) for p in vectors["sdk_encodes"]],
            "decode": {str(p): labelstudio_rle.mask_to_brush_rle(np.load(p)) for p in vectors["sdk_decodes"]}}
    (root / "spec.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    out = root / "out"
    out.mkdir()
    codec = ls_sdk.json(SDK_SCRIPT, str(root / "spec.json"), str(out))
    expected = {
        11: [("car", tools.polygon_mask(CAR_POLY, EXIF_H, EXIF_W)),
             ("sign board", tools.polygon_mask(rotated_corners(*SIGN_RECT), EXIF_H, EXIF_W)),
             ("car", car_brush)],
        12: [("car", tools.polygon_mask(STREET_CAR, H, W)),
             ("sign board", tools.polygon_mask(rotated_corners(*STREET_SIGN), H, W))],
        13: [("sign board", sign_brush)],
        16: [],
    }
    return {"root": root, "photos": photos, "json": out / "export.json",
            "min": out / "json_min" / "result.json", "coco": out / "coco" / "result.json", "codec": codec,
            "expected": expected}


def _codec_vectors(root: Path) -> dict:
    rng = np.random.default_rng(0)
    masks = {"blob": disc(40, 30, 17, 64, 80), "noise": rng.random((33, 47)) < 0.5,
             "empty": np.zeros((5, 7), bool), "full": np.ones((300, 400), bool),  # runs longer than 65536
             "pixel": block(3, 4, 5, 6, 9, 11)}
    rgba = np.zeros((20, 30, 4), np.uint8)  # an editor stroke: label colour in RGB, anti-aliased alpha
    rgba[5:15, 8:22] = (255, 0, 0, 255)
    rgba[4, 8:22, :] = (255, 0, 0, 90)
    rgba[15, 8:22, :] = (255, 0, 0, 200)
    paths = {"sdk_encodes": [], "sdk_decodes": []}
    for name, m in masks.items():
        np.save(root / f"v_{name}.npy", (m * 255).astype(np.uint8))
        paths["sdk_encodes"].append(root / f"v_{name}.npy")
        np.save(root / f"d_{name}.npy", m)
        paths["sdk_decodes"].append(root / f"d_{name}.npy")
    np.save(root / "v_stroke.npy", rgba)
    paths["sdk_encodes"].append(root / "v_stroke.npy")
    return paths


def _check_instances(dicts, classes, expected, tools, min_iou=0.9):
    by_task = {d["image_id"]: d for d in dicts}
    assert sorted(by_task) == sorted(expected)
    for tid, instances in expected.items():
        d = by_task[tid]
        got = [(classes[a["category_id"]], tools.annotation_mask(a, d["height"], d["width"]))
               for a in d["annotations"]]
        assert [c for c, _ in got] == [c for c, _ in instances], tid
        for (_, m), (_, e) in zip(got, instances):
            assert m.shape == e.shape and tools.iou(m, e) >= min_iou, (tid, tools.iou(m, e))


# ------------------------------------------------------------------------------------------ tests


def test_our_codec_matches_the_sdk(exports):
    for path, vec in exports["codec"].items():
        arr = np.load(path)
        if "encoded" in vec and arr.ndim == 2:  # mask2rle(mask): our encoder is bit-identical, decoder exact
            assert labelstudio_rle.mask_to_brush_rle(arr > 0) == vec["encoded"], path
            np.testing.assert_array_equal(labelstudio_rle.rle_to_mask(vec["encoded"], *arr.shape), arr > 0)
        elif "encoded" in vec:  # an RGBA stroke with anti-aliased alpha
            np.testing.assert_array_equal(labelstudio_rle.decode(vec["encoded"]), arr.ravel())
            mask = labelstudio_rle.rle_to_mask(vec["encoded"], *arr.shape[:2])
            np.testing.assert_array_equal(mask, arr[..., 3] >= 128)
        else:  # the SDK decodes what we encode
            np.testing.assert_array_equal(np.reshape(vec["decoded"], (*arr.shape, 4))[..., 3], arr * 255)


def test_json_export(exports, tools):
    res = read_dataset(exports["json"], exports["photos"], fmt="labelstudio", classes=CLASSES)
    _check_instances(res.dicts, res.thing_classes, exports["expected"], tools)
    exif = next(d for d in res.dicts if d["image_id"] == 11)
    assert (exif["height"], exif["width"]) == (EXIF_H, EXIF_W)
    assert exif["file_name"].endswith("my photo été.jpg")
    assert res.skipped == {"unlabelled task": 1, "keypointlabels result": 1, "choices result": 1}


def test_json_min_export_gives_the_same_instances(exports, tools):
    res = read_dataset(exports["min"], exports["photos"], fmt="labelstudio_min", classes=CLASSES)
    _check_instances(res.dicts, res.thing_classes, exports["expected"], tools)
    assert res.skipped == {"unlabelled task": 1, "keypointlabels result": 1}
    by_format = read_dataset(exports["min"], exports["photos"], fmt="labelstudio", classes=CLASSES)  # family accepted
    assert by_format.format == "labelstudio_min" and len(by_format.dicts) == 4


def test_coco_export(exports, tools, caplog):
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(exports["coco"], exports["photos"], fmt="auto")
    assert res.format == "labelstudio_coco"
    assert res.thing_classes == CLASSES  # its categories also hold the Choices; only used ones count
    by_name = {Path(d["file_name"]).name: d for d in res.dicts}
    assert sorted(by_name) == ["cars.jpg", "my photo été.jpg", "negative.jpg", "street 1.png",
                               "unlabelled.jpg"]
    exif = by_name["my photo été.jpg"]
    assert (exif["height"], exif["width"]) == (EXIF_H, EXIF_W)  # its COCO size is the pre-EXIF 96 x 72
    car, sign = exif["annotations"]
    drawn = tools.polygon_mask(CAR_POLY, EXIF_H, EXIF_W)
    assert tools.iou(tools.annotation_mask(car, EXIF_H, EXIF_W), drawn) > 0.9
    assert res.thing_classes[sign["category_id"]] == "sign board" and len(sign["segmentation"][0]) == 8
    street = by_name["street 1.png"]["annotations"]  # the newest annotation of task 12 is kept
    assert [res.thing_classes[a["category_id"]] for a in street] == ["car", "sign board"]
    assert not by_name["cars.jpg"]["annotations"]  # brush-only: missing from the COCO export
    assert res.adjusted == {"EXIF-rotated image whose size was recorded before rotation": 1,
                            "box without segmentation (box-shaped mask)": 2}
    assert res.skipped == {"older annotation of the same task (Label Studio COCO repeats the image)": 1}
    assert "leaves out brush" in caplog.text and "export it as 'JSON'" in caplog.text
