"""Label Studio JSON export importer: synthetic exports shaped like Label Studio 1.x writes them."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.data import load_dataset, read_dataset
from maskseg_d2.data.labelstudio import pick_annotation
from maskseg_d2.data.labelstudio_paths import ImageURI, parse_uri, resolve_image
from maskseg_d2.errors import UserError
from pycocotools import mask as mask_util

W, H = 80, 60


# ------------------------------------------------------------------------------------------ helpers


def write_image(path: Path, w: int = W, h: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, np.full((h, w, 3), 127, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())  # cv2.imwrite is unreliable with non-ASCII paths on some platforms
    return path


def polygon_result(points_px, label, rid="r1", w=W, h=H) -> dict:
    pts = [[x / w * 100, y / h * 100] for x, y in points_px]
    return {"id": rid, "type": "polygonlabels", "from_name": "label", "to_name": "image", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"points": pts, "closed": True, "polygonlabels": [label]}}


def rect_result(x, y, bw, bh, rotation, label, rid="b1", w=W, h=H) -> dict:
    return {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": x / w * 100, "y": y / h * 100, "width": bw / w * 100, "height": bh / h * 100,
                      "rotation": rotation, "rectanglelabels": [label]}}


def annotation(results, aid=1, **fields) -> dict:
    ann = {"id": aid, "completed_by": 1, "was_cancelled": False, "ground_truth": False, "lead_time": 3.5,
           "created_at": "2024-05-01T10:00:00.000000Z", "updated_at": "2024-05-01T10:00:00.000000Z",
           "result": results}
    ann.update(fields)
    return ann


def task(tid, image, annotations) -> dict:
    return {"id": tid, "data": {"image": image}, "project": 3, "annotations": annotations,
            "predictions": [], "drafts": [], "file_upload": image.rsplit("/", 1)[-1]}


def write_export(tmp_path: Path, tasks) -> Path:
    path = tmp_path / "labelstudio.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def decode_segmentation(ann: dict, h: int = H, w: int = W) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, dict):
        return mask_util.decode(seg).astype(bool)
    return rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], h, w)


def drawn_mask(points_px, h: int = H, w: int = W) -> np.ndarray:
    """Reference raster: pixels whose centre (j + 0.5, i + 0.5) lies inside the polygon."""
    contour = np.asarray(points_px, np.float32).reshape(-1, 1, 2)
    return np.array([[cv2.pointPolygonTest(contour, (j + 0.5, i + 0.5), False) >= 0 for j in range(w)]
                     for i in range(h)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def assert_one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_image(root / "street.jpg")
    return root


CAR = [(10, 10), (50, 12), (45, 40), (12, 35)]
SIGN = [(60, 5), (75, 5), (75, 25), (60, 25)]


# ---------------------------------------------------------------------------------------- geometry


def test_polygons_loaded_in_pixels(tmp_path, images):
    export = write_export(tmp_path, [task(7, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "car", "a"), polygon_result(SIGN, " sign board ", "b")])])])
    res = read_dataset(export, images, fmt="labelstudio")
    assert res.thing_classes == ["car", "sign board"]  # discovered, stripped, sorted
    (d,) = res.dicts
    assert d["file_name"] == str(images / "street.jpg")
    assert (d["height"], d["width"], d["image_id"]) == (H, W, 7)
    car, sign = d["annotations"]
    assert [car["category_id"], sign["category_id"]] == [0, 1]
    assert car["iscrowd"] == 0 and car["bbox_mode"].name == "XYWH_ABS"
    np.testing.assert_allclose(np.reshape(car["segmentation"][0], (-1, 2)), CAR, atol=1e-9)
    np.testing.assert_allclose(car["bbox"], [10, 10, 40, 30], atol=1e-9)
    assert iou(decode_segmentation(car), drawn_mask(CAR)) > 0.95
    assert iou(decode_segmentation(sign), drawn_mask(SIGN)) > 0.95


def test_rotated_rectangle_corners(tmp_path, images):
    x, y, bw, bh = 20.0, 10.0, 30.0, 16.0
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([
        rect_result(x, y, bw, bh, 30, "car"), rect_result(5, 5, 10, 10, 0, "car", "b2")])])])
    rotated, plain = load_dataset(export, images, fmt="labelstudio")[0]["annotations"]
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    # clockwise on screen (y down): the top edge goes right and DOWN
    expected = [(x, y), (x + bw * c, y + bw * s), (x + bw * c - bh * s, y + bw * s + bh * c),
                (x - bh * s, y + bh * c)]
    np.testing.assert_allclose(np.reshape(rotated["segmentation"][0], (-1, 2)), expected, atol=1e-6)
    xs, ys = [p[0] for p in expected], [p[1] for p in expected]
    expected_box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    np.testing.assert_allclose(rotated["bbox"], expected_box, atol=1e-6)
    assert iou(decode_segmentation(rotated), drawn_mask(expected)) > 0.95
    np.testing.assert_allclose(plain["bbox"], [5, 5, 10, 10], atol=1e-9)


def test_brush_rle_becomes_coco_rle(tmp_path, images):
    from maskseg_d2.data.labelstudio_rle import mask_to_brush_rle

    mask = np.zeros((H, W), bool)
    mask[20:41, 30:71] = True
    mask[45:50, 5:9] = True
    result = {"id": "br", "type": "brushlabels", "from_name": "brush", "to_name": "image", "origin": "manual",
              "original_width": W, "original_height": H, "image_rotation": 0,
              "value": {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": ["car"]}}
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([result])])])
    (ann,) = load_dataset(export, images, fmt="labelstudio")[0]["annotations"]
    assert isinstance(ann["segmentation"], dict) and isinstance(ann["segmentation"]["counts"], str)
    np.testing.assert_array_equal(decode_segmentation(ann), mask)
    assert ann["bbox"] == [5.0, 20.0, 66.0, 30.0]


# ---------------------------------------------------------------------------------------- images


def test_upload_names_with_spaces_and_non_ascii(tmp_path):
    root = tmp_path / "images"
    write_image(root / "my photo (1).jpg")
    write_image(root / "sub" / "panneau été.png")
    write_image(root / "other.jpg")
    uris = ["/data/upload/3/e97d4735-my_photo_1.jpg", "/data/upload/3/0a1b2c3d-panneau_%C3%A9t%C3%A9.png",
            "/storage-data/uploaded/?filepath=upload/3/0a1b2c3d-other.jpg"]
    export = write_export(tmp_path, [task(i, u, [annotation([])]) for i, u in enumerate(uris)])
    names = [Path(d["file_name"]).relative_to(root).as_posix() for d in load_dataset(export, root, fmt="labelstudio")]
    assert names == ["my photo (1).jpg", "sub/panneau été.png", "other.jpg"]


def test_local_files_and_urls(tmp_path):
    root = tmp_path / "images"
    write_image(root / "sub" / "a.jpg")
    write_image(root / "b.jpg")
    assert resolve_image("/data/local-files/?d=sub/a.jpg", root) == str(root / "sub/a.jpg")
    # document root above the image folder: the path's tail matches
    assert resolve_image("/data/local-files/?d=home/me/proj/images/sub%2Fa.jpg", root).endswith("sub/a.jpg")
    assert resolve_image("https://example.com/bucket/b.jpg?X-Amz=1", root).endswith("b.jpg")
    assert resolve_image("s3://bucket/deep/b.jpg", root).endswith("b.jpg")


@pytest.mark.parametrize("uri,kind,path,host", [
    ("/data/local-files/?d=sub%2Fa%20b.jpg", "local", "sub/a b.jpg", ""),
    ("http://ls:8080/data/local-files/?d=sub/a.jpg", "local", "sub/a.jpg", "ls:8080"),
    ("/data/local-files/", "local", "", ""),
    ("/data/upload/3/1a2b3c4d-car%20park.jpg", "upload", "upload/3/1a2b3c4d-car park.jpg", ""),
    ("/storage-data/uploaded/?filepath=upload/3/1a2b3c4d-a.jpg", "upload", "upload/3/1a2b3c4d-a.jpg", ""),
    ("https://example.com:8443/img/a%20b.png?sig=1", "url", "/img/a b.png", "example.com:8443"),
    ("s3://bucket/night/a.jpg", "cloud", "/night/a.jpg", "bucket"),
    # the scheme decides before the path: a bucket's data/upload/ folder is not Label Studio's uploads
    ("s3://bucket/data/upload/x.jpg", "cloud", "/data/upload/x.jpg", "bucket"),
    ("ftp://host/data/upload/x.jpg", "other", "ftp://host/data/upload/x.jpg", ""),
    ("https://ls.example/data/upload/3/1a2b3c4d-a.jpg", "upload", "upload/3/1a2b3c4d-a.jpg", "ls.example"),
    ("azure-blob://container/a.jpg", "cloud", "/a.jpg", "container"),
    ("data:image/png;base64,iVBOR", "data", "data:image/png;base64,iVBOR", ""),
    ("ftp://host/a.jpg", "other", "ftp://host/a.jpg", ""),
    ("/api/tasks/1/image", "server", "/api/tasks/1/image", ""),
    ("photos/a.jpg", "relative", "photos/a.jpg", ""),
])
def test_one_reading_of_image_uris(uri, kind, path, host):
    """The importer, the pull's image cache and the ML backend all read a task's image URI with parse_uri."""
    assert parse_uri(uri) == ImageURI(kind, path, host)


@pytest.mark.parametrize("uri", ["/data/local-files/?d=../secret.jpg", "/data/local-files/?d=/etc/secret.jpg",
                                 "sub/../../secret.jpg"])
def test_path_traversal_rejected(tmp_path, uri):
    root = tmp_path / "images"
    write_image(root / "secret.jpg")
    write_image(tmp_path / "secret.jpg")
    export = write_export(tmp_path, [task(12, uri, [annotation([])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, root, fmt="labelstudio")
    assert_one_line_error(e, str(export), "task 12", "image folder")


def test_missing_image_lists_candidates(tmp_path):
    root = tmp_path / "images"
    for n in ("car_1.jpg", "car_02.jpg", "tree.jpg"):
        write_image(root / n)
    export = write_export(tmp_path, [task(5, "/data/upload/3/abcdef12-car_01.jpg", [annotation([])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, root, fmt="labelstudio")
    msg = assert_one_line_error(e, str(export), "task 5", "car_01.jpg", "car_02.jpg", "car_1.jpg")
    assert "tree.jpg" not in msg


def test_ambiguous_name(tmp_path):
    root = tmp_path / "images"
    write_image(root / "a" / "x.jpg")
    write_image(root / "b" / "x.jpg")
    export = write_export(tmp_path, [task(9, "http://host/data/x.jpg", [annotation([])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, root, fmt="labelstudio")
    assert_one_line_error(e, str(export), "task 9", "a/x.jpg", "b/x.jpg")


def test_size_mismatch(tmp_path, images):
    export = write_export(tmp_path, [task(4, "/data/upload/3/e97d4735-street.jpg",
                                          [annotation([polygon_result(CAR, "car", w=W * 2, h=H)])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio")
    assert_one_line_error(e, str(export), "task 4", "160x60", "80x60", "aspect ratio")


def test_resized_photo_rescaled_and_counted(tmp_path, images, caplog):
    """Annotated at 160x120, photo later saved at 80x60: percentages follow the image; one warning says so."""
    big = [(2 * x, 2 * y) for x, y in CAR]
    export = write_export(tmp_path, [task(4, "/data/upload/3/e97d4735-street.jpg",
                                          [annotation([polygon_result(big, "car", w=W * 2, h=H * 2)])])])
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(export, images, fmt="labelstudio")
    (d,) = res.dicts
    assert (d["height"], d["width"]) == (H, W)
    np.testing.assert_allclose(np.reshape(d["annotations"][0]["segmentation"][0], (-1, 2)), CAR, atol=1e-9)
    assert res.adjusted == {"image resized since it was annotated (geometry rescaled)": 1}
    assert "adjusted 1 item(s)" in caplog.text and "task 4" in caplog.text


def test_brush_on_resized_photo(tmp_path, images):
    from maskseg_d2.data.labelstudio_rle import mask_to_brush_rle

    big = np.zeros((H * 2, W * 2), bool)
    big[40:80, 60:140] = True
    result = {"id": "br", "type": "brushlabels", "original_width": W * 2, "original_height": H * 2,
              "value": {"format": "rle", "rle": mask_to_brush_rle(big), "brushlabels": ["car"]}}
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([result])])])
    (ann,) = load_dataset(export, images, fmt="labelstudio")[0]["annotations"]
    expected = np.zeros((H, W), bool)
    expected[20:40, 30:70] = True
    np.testing.assert_array_equal(decode_segmentation(ann), expected)


def test_unknown_label_skip_policy(tmp_path, images, caplog):
    export = write_export(tmp_path, [task(8, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "car"), polygon_result(SIGN, "tree", "t1"),
        polygon_result(SIGN, "tree", "t2")])])])
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(export, images, fmt="labelstudio", classes=["sign board", "car"], unknown="skip")
    assert res.thing_classes == ["sign board", "car"]
    assert [a["category_id"] for a in res.dicts[0]["annotations"]] == [1]
    assert res.skipped == {"unknown label 'tree'": 2}
    assert "2× unknown label 'tree'" in caplog.text


def test_lenient_load_collects_every_problem(tmp_path, images):
    nan = polygon_result(CAR, "car", "r9")
    nan["value"]["points"][2][1] = float("nan")
    export = write_export(tmp_path, [
        task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([
            nan, polygon_result([(1, 1), (5, 5)], "car", "r2"), polygon_result(SIGN, "sign", "ok")])]),
        task(2, "/data/upload/3/e97d4735-gone.jpg", [annotation([polygon_result(CAR, "car")])])])
    res = read_dataset(export, images, fmt="labelstudio", strict=False)
    assert [k for k, _ in res.problems] == ["NaN coordinate", "fewer than 3 points", "image or task"]
    assert "result r9" in res.problems[0][1] and "task 2" in res.problems[2][1]
    assert len(res.dicts) == 1 and len(res.dicts[0]["annotations"]) == 1  # the valid region survives


def test_upload_name_with_hash_prefix_kept_on_disk(tmp_path):
    """The photos copied out of Label Studio's media/upload folder keep the 8-hex prefix."""
    root = tmp_path / "images"
    write_image(root / "e97d4735-street.jpg")
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([])])])
    assert load_dataset(export, root, fmt="labelstudio")[0]["file_name"] == str(root / "e97d4735-street.jpg")


# ------------------------------------------------------------------------------ annotations & tasks


def test_cancelled_annotation_ignored(tmp_path, images):
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [
        annotation([polygon_result(SIGN, "sign")], aid=1, was_cancelled=True,
                   updated_at="2025-01-01T00:00:00Z"),
        annotation([polygon_result(CAR, "car")], aid=2)])])
    res = read_dataset(export, images, fmt="labelstudio")
    assert res.thing_classes == ["car"]
    assert len(res.dicts[0]["annotations"]) == 1


def test_pick_policy():
    old_truth = annotation([], aid=1, ground_truth=True, updated_at="2024-01-01T00:00:00Z")
    newer = annotation([], aid=2, updated_at="2024-06-01T00:00:00.5+00:00")
    newest_cancelled = annotation([], aid=3, was_cancelled=True, updated_at="2025-01-01T00:00:00Z")
    anns = [old_truth, newer, newest_cancelled]
    assert pick_annotation(anns)["id"] == 1
    assert pick_annotation(anns, "latest")["id"] == 2
    assert pick_annotation(anns, "first")["id"] == 1
    assert pick_annotation([newer, annotation([], aid=4, updated_at="2024-03-01T00:00:00Z")])["id"] == 2
    assert pick_annotation([newest_cancelled]) is None


def test_ground_truth_wins_when_loading(tmp_path, images):
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [
        annotation([polygon_result(CAR, "car")], aid=1, ground_truth=True),
        annotation([polygon_result(SIGN, "sign")], aid=2, updated_at="2025-01-01T00:00:00Z")])])
    assert read_dataset(export, images, fmt="labelstudio").thing_classes == ["car"]
    assert read_dataset(export, images, fmt="labelstudio", pick="latest").thing_classes == ["sign"]


def test_unlabelled_and_unsupported_counted_in_one_warning(tmp_path, images, caplog):
    keypoint = {"id": "k", "type": "keypointlabels", "original_width": W, "original_height": H,
                "value": {"x": 10, "y": 10, "width": 1, "keypointlabels": ["car"]}}
    choice = {"id": "c", "type": "choices", "value": {"choices": ["day"]}}
    export = write_export(tmp_path, [
        task(1, "/data/upload/3/e97d4735-street.jpg",
             [annotation([polygon_result(CAR, "car"), keypoint, choice])]),
        task(2, "/data/upload/3/e97d4735-missing.jpg", []),
        task(3, "/data/upload/3/e97d4735-missing.jpg", [annotation([], was_cancelled=True)])])
    with caplog.at_level(logging.WARNING, logger="maskseg_d2"):
        res = read_dataset(export, images, fmt="labelstudio")
    assert len(res.dicts) == 1 and len(res.dicts[0]["annotations"]) == 1
    assert res.skipped == {"unlabelled task": 2, "keypointlabels result": 1, "choices result": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 4" in warnings[0].getMessage() and "unlabelled task" in warnings[0].getMessage()


def test_empty_result_kept_as_background_image(tmp_path, images):
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([])])])
    (d,) = load_dataset(export, images, fmt="labelstudio", classes=["car"])
    assert d["annotations"] == [] and (d["height"], d["width"]) == (H, W)


def test_class_map_and_classes(tmp_path, images):
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "Car"), polygon_result(SIGN, "junk", "b")])])])
    (d,) = load_dataset(export, images, fmt="labelstudio", classes=["sign", "car"],
                        class_map={"Car": "car", "junk": None})
    assert [a["category_id"] for a in d["annotations"]] == [1]


# -------------------------------------------------------------------------------------------- errors


def test_nan_coordinate(tmp_path, images):
    bad = polygon_result(CAR, "car", "r9")
    bad["value"]["points"][2][1] = float("nan")
    export = write_export(tmp_path, [task(3, "/data/upload/3/e97d4735-street.jpg", [annotation([bad])])])
    assert "NaN" in export.read_text()  # what json.dumps writes (and Label Studio's Python side accepts)
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio")
    assert_one_line_error(e, str(export), "task 3", "result r9", "NaN")


def test_two_point_polygon(tmp_path, images):
    export = write_export(tmp_path, [task(3, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "car", "ok"), polygon_result([(1, 1), (5, 5)], "car", "r2")])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio")
    assert_one_line_error(e, str(export), "task 3", "result r2", "#1", "2 point(s)")


def test_unknown_label(tmp_path, images):
    export = write_export(tmp_path, [task(8, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "car"), polygon_result(SIGN, "tree", "t1"),
        polygon_result(SIGN, "tree", "t2")])])])
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio", classes=["car", "sign board"])
    assert_one_line_error(e, str(export), "'tree' (2×", "task 8", "classes", "class_map")


def test_truncated_json(tmp_path, images):
    export = write_export(tmp_path, [task(1, "/data/upload/3/e97d4735-street.jpg", [annotation([
        polygon_result(CAR, "car")])])])
    export.write_text(export.read_text()[:-25])
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio")
    assert_one_line_error(e, str(export), "invalid JSON at line 1 column", "truncated")


def test_top_level_not_a_list(tmp_path, images):
    export = tmp_path / "labelstudio.json"
    export.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(UserError) as e:
        load_dataset(export, images, fmt="labelstudio")
    assert_one_line_error(e, str(export), "this is a COCO instances file, not a Label Studio JSON export",
                          "set the format to coco")
