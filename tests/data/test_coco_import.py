"""Generic COCO instances files: polygons, compressed and uncompressed RLE, iscrowd, ids from 0, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset, read_dataset
from maskseg_d2.errors import UserError

W, H = 64, 48
TRI = [(4, 4), (40, 6), (20, 40)]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a 0-run."""
    flat = mask.flatten(order="F").astype(np.uint8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


@pytest.fixture
def scene(tmp_path, tools):
    """Images under images/ (one in a subfolder, one with a space) and masks drawn for them."""
    for name in ("a.jpg", "sub/b c.png"):
        tools.write_photo(tmp_path / "images" / name, W, H)
    blob = np.zeros((H, W), bool)
    blob[10:30, 20:50] = True
    crowd = np.zeros((H, W), bool)
    crowd[35:45, 5:60] = True
    return tmp_path, blob, crowd


def coco_doc(blob, crowd, cat_ids=(0, 7)) -> dict:
    compressed = mask_util.encode(np.asfortranarray(blob.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    return {
        "images": [{"id": 0, "file_name": "a.jpg", "width": W, "height": H},
                   {"id": 5, "file_name": "sub/b c.png", "width": W, "height": H}],
        "categories": [{"id": cat_ids[0], "name": "car"}, {"id": cat_ids[1], "name": "Sign Board"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": cat_ids[0], "iscrowd": 0,
             "segmentation": [[v for p in TRI for v in p]], "bbox": [0, 0, 1, 1], "area": 1},
            {"id": 1, "image_id": 0, "category_id": cat_ids[1], "iscrowd": 0, "segmentation": compressed},
            {"id": 2, "image_id": 5, "category_id": cat_ids[0], "iscrowd": 1,
             "segmentation": uncompressed_rle(crowd)},
            {"id": 3, "image_id": 5, "category_id": cat_ids[1], "iscrowd": 0, "segmentation": [],
             "bbox": [2.0, 3.0, 10.0, 8.0]},
        ],
    }


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_polygons_rle_crowd_and_boxes(scene, tools):
    root, blob, crowd = scene
    res = read_dataset(write(root / "coco.json", coco_doc(blob, crowd)), root / "images", fmt="coco",
                    class_map={"Sign Board": "sign board"})
    assert res.thing_classes == ["car", "sign board"] and res.format == "coco"
    a, b = res.dicts
    assert (a["image_id"], b["image_id"]) == (0, 5) and b["file_name"] == str(root / "images/sub/b c.png")
    tri, rle = a["annotations"]
    assert tools.iou(tools.annotation_mask(tri, H, W), tools.polygon_mask(TRI, H, W)) > 0.9
    assert tri["bbox"] == [4.0, 4.0, 36.0, 36.0]  # recomputed from the polygon, not the file's bbox
    assert isinstance(rle["segmentation"]["counts"], str) and rle["bbox"] == [20.0, 10.0, 30.0, 20.0]
    np.testing.assert_array_equal(tools.annotation_mask(rle, H, W), blob)
    crowd_ann, box = b["annotations"]
    assert crowd_ann["iscrowd"] == 1 and tools.iou(tools.annotation_mask(crowd_ann, H, W), crowd) == 1.0
    assert [res.thing_classes[x["category_id"]] for x in (tri, rle, crowd_ann, box)] == [
        "car", "sign board", "car", "sign board"]
    box_corners = [(2, 3), (12, 3), (12, 11), (2, 11)]
    np.testing.assert_allclose(np.reshape(box["segmentation"][0], (-1, 2)), box_corners)
    assert res.adjusted == {"box without segmentation (box-shaped mask)": 1}


def test_category_ids_with_gaps_and_explicit_classes(scene):
    root, blob, crowd = scene
    path = write(root / "coco.json", coco_doc(blob, crowd, cat_ids=(1, 90)))
    dicts = load_dataset(path, root / "images", fmt="coco", classes=["Sign Board", "car"])
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [1, 0]


def test_file_name_variants(scene, tools):
    root, blob, crowd = scene
    doc = coco_doc(blob, crowd)
    doc["images"][0]["file_name"] = str(root / "images" / "a.jpg")  # absolute, inside the root
    doc["images"][1]["file_name"] = "b c.png"  # only the name; the file is in sub/
    dicts = load_dataset(write(root / "coco.json", doc), root / "images", fmt="coco")
    assert [Path(d["file_name"]).name for d in dicts] == ["a.jpg", "b c.png"]


@pytest.mark.parametrize("edit, needles", [
    (lambda d: d["images"][0].update(file_name="../secret.jpg"), ["image 0", "'..'"]),
    (lambda d: d["images"][0].update(file_name="/etc/secret.jpg"), ["image 0", "outside the image folder"]),
    (lambda d: d["annotations"][0].update(category_id=3), ["annotations[0]", "category_id 3", "ids [0, 7]"]),
    (lambda d: d["annotations"][1].update(id=0), ["annotations[1]", "annotation id 0 appears twice"]),
    (lambda d: d["annotations"][0].update(image_id=9), ["annotations[0]", "image_id 9"]),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), ["annotation 0", "2 point(s)"]),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, float("nan"), 4, 5, 6]]),
     ["annotation 0", "NaN"]),
    (lambda d: d["images"][1].update(width=50), ["image 5", "50x48", "64x48"]),
    (lambda d: d["images"].append(dict(d["images"][0], id=8)), ["images[2]", "listed twice"]),
    (lambda d: d.pop("categories"), ["category_id 0 is not in 'categories'"]),
])
def test_errors_name_file_and_item(scene, edit, needles):
    root, blob, crowd = scene
    doc = coco_doc(blob, crowd)
    edit(doc)
    path = write(root / "coco.json", doc)
    with pytest.raises(UserError) as e:
        load_dataset(path, root / "images", fmt="coco")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_resized_images_rescale_polygons_and_rle(scene, tools):
    root, blob, crowd = scene
    doc = coco_doc(blob, crowd)
    doc["images"][0].update(width=2 * W, height=2 * H)
    big = np.kron(blob, np.ones((2, 2), bool))
    rle = mask_util.encode(np.asfortranarray(big.astype(np.uint8)))
    doc["annotations"][0]["segmentation"] = [[2 * v for p in TRI for v in p]]
    doc["annotations"][1]["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    res = read_dataset(write(root / "coco.json", doc), root / "images", fmt="coco")
    tri, mask = res.dicts[0]["annotations"]
    np.testing.assert_allclose(np.reshape(tri["segmentation"][0], (-1, 2)), TRI)
    np.testing.assert_array_equal(tools.annotation_mask(mask, H, W), blob)
    assert res.adjusted["image resized since it was annotated (geometry rescaled)"] == 1
