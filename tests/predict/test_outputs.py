"""Output writers without a model: the demo set's ground truth, written as predictions, must come back
through our own importers (Label Studio, LabelMe) and pycocotools as the same instances."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.data.labelstudio_rle import rle_to_mask
from maskseg_d2.errors import UserError
from maskseg_d2.predict import Detections, ExportOptions, OutputWriter
from maskseg_d2.predict.detections import mask_boxes
from maskseg_d2.predict.annotations import (
    LABELME_VERSION,
    coco_results,
    labelme_document,
    labelme_shapes,
    labelstudio_results,
    labelstudio_task,
    mask_to_polygons,
)
from maskseg_d2.predict.outputs import ImageItem, class_slug
from maskseg_d2.predict.sources import output_stems, read_bgr

CLASSES = ["car", "sign board"]


def _ring_and_blob(h: int = 40, w: int = 60) -> np.ndarray:
    """Two parts: a 20x15 block and a ring (the hole is ignored by outlines)."""
    m = np.zeros((h, w), bool)
    m[5:20, 5:25] = True
    cv2.circle(m.view(np.uint8), (45, 28), 9, 1, -1)
    m[26:31, 43:48] = False
    return m


def test_mask_to_polygons_follows_pixel_edges():
    m = _ring_and_blob()
    polys = mask_to_polygons(m, tolerance=0.0)
    assert len(polys) == 2 and len(polys[0]) >= 4
    assert polys[0][:, 0].min() == pytest.approx(5.125) and polys[0][:, 0].max() == pytest.approx(24.875)
    filled = m.copy()
    filled[26:31, 43:48] = True  # outlines ignore holes
    back = rasterize_polygons(polys, *m.shape)
    assert np.array_equal(back, filled)
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    single = np.zeros((5, 5), bool)
    single[2, 3] = True  # one pixel still gives a polygon: every kept instance has an outline
    assert rasterize_polygons(mask_to_polygons(single), 5, 5).sum() == 1


def _dets(masks, classes, scores) -> Detections:
    masks = np.asarray(masks, bool)
    return Detections(mask_boxes(masks), np.asarray(scores, np.float32), np.asarray(classes, np.int64), masks)


def test_result_formats_are_exact_where_the_format_allows():
    m = _ring_and_blob()
    d = _dets([m, m[::-1]], [0, 1], [0.9, 0.4])
    coco = coco_results(d, image_id=7)
    assert [r["category_id"] for r in coco] == [1, 2] and coco[0]["image_id"] == 7
    ys, xs = np.nonzero(m)
    assert coco[0]["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    assert coco[1]["score"] == pytest.approx(0.4)

    brush = labelstudio_results(d, CLASSES, "brush", "brush", "img", id_seed="x")
    assert [r["type"] for r in brush] == ["brushlabels"] * 2 and brush[1]["value"]["brushlabels"] == [
        "sign board"
    ]
    assert np.array_equal(rle_to_mask(brush[0]["value"]["rle"], 40, 60), m)
    assert brush[0]["from_name"] == "brush" and brush[0]["to_name"] == "img" and brush[0]["score"] == 0.9
    poly = labelstudio_results(d, CLASSES, "polygon", id_seed="x")
    pts = np.array(poly[0]["value"]["points"]) * [60 / 100, 40 / 100]
    assert poly[0]["value"]["closed"] and len({r["id"] for r in poly + brush}) == 2  # ids stable per image
    assert np.array_equal(
        rasterize_polygons([pts], 40, 60), m & (np.arange(60) < 30)[None, :]
    )  # largest part
    task = labelstudio_task("/data/upload/1/x.jpg", poly, d.scores, "run7", data_key="img")
    assert task["data"] == {"img": "/data/upload/1/x.jpg"}
    assert (
        task["predictions"][0]["score"] == pytest.approx(0.65)
        and task["predictions"][0]["model_version"] == "run7"
    )

    shapes = labelme_shapes(d, CLASSES, "polygon")
    assert len(shapes) == 4 and {s["group_id"] for s in shapes} == {1, 2}  # 2 parts per instance, grouped
    masks = labelme_shapes(d, CLASSES, "mask")
    assert [s["shape_type"] for s in masks] == ["mask", "mask"] and masks[0]["points"] == [
        [xs.min(), ys.min()],
        [xs.max(), ys.max()],
    ]
    doc = labelme_document(masks, "../x.jpg", 40, 60)
    assert doc["imageData"] is None and doc["imageHeight"] == 40 and doc["version"] == LABELME_VERSION
    with pytest.raises(ValueError):
        labelstudio_results(d, CLASSES, "rectangle")


def test_output_names():
    assert class_slug("sign board") == "sign-board" and class_slug("Schild/été") == "Schild-t"
    stems = output_stems(["r/a.jpg", "r/a.png", "r/s/b.jpg"], "r")
    assert stems == ["a_jpg", "a_png", "s/b"]


@pytest.fixture(scope="module")
def gt_as_predictions(demo_root, tmp_path_factory):
    """The demo's Label Studio ground truth written by OutputWriter as if it had been predicted."""
    records = load_dataset(demo_root / "labelstudio.json", demo_root / "images", fmt="labelstudio", classes=CLASSES)[:6]
    root = tmp_path_factory.mktemp("gt") / "photos"
    root.mkdir()
    for r in records:
        shutil.copy(r["file_name"], root / Path(r["file_name"]).name)
    return root, records


@pytest.mark.parametrize("ls_shape,lm_shape", [("polygon", "polygon"), ("brush", "mask")])
def test_writer_outputs_round_trip_through_our_importers(
    gt_as_predictions, tmp_path, ls_shape, lm_shape, assert_outputs_consistent
):
    root, records = gt_as_predictions
    out = tmp_path / "out"
    opts = ExportOptions(ls_shape=ls_shape, labelme_shape=lm_shape)
    writer = OutputWriter(
        str(out),
        ["overlay", "masks", "cutout", "coco", "labelstudio", "labelme"],
        CLASSES,
        opts,
        str(root),
        "gt",
    )
    paths = sorted(str(root / Path(r["file_name"]).name) for r in records)
    by_name = {Path(r["file_name"]).name: r for r in records}
    for i, (p, stem) in enumerate(zip(paths, output_stems(paths, str(root)))):
        gt = Detections.from_record(by_name[Path(p).name])
        gt.scores[:] = np.linspace(0.95, 0.5, len(gt)) if len(gt) else gt.scores
        writer.write(ImageItem(i, p, stem), read_bgr(p), gt)
    files = writer.close()
    assert len(files["overlay"]) == len(paths) and files["coco"].endswith("coco_results.json")
    coco = assert_outputs_consistent(
        out, root, CLASSES, ls_shape, min_iou=0.9 if ls_shape == "polygon" else 1.0
    )
    # ... and the instances are the ground truth's
    for p in paths:
        gt = Detections.from_record(by_name[Path(p).name])
        assert [c - 1 for c, _, _ in coco[p]] == gt.classes.tolist()
        assert all(np.array_equal(m, g) for (_, _, m), g in zip(coco[p], gt.masks))
    tasks = json.loads((out / "labelstudio_predictions.json").read_text())
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d=photos/{Path(paths[0]).name}"
    lm = json.loads((out / "labelme" / f"{Path(paths[0]).stem}.json").read_text())
    assert lm["imagePath"] == os.path.relpath(paths[0], out / "labelme") and lm["imageData"] is None


def test_labelme_next_to_images_never_overwrites(gt_as_predictions, tmp_path):
    root, records = gt_as_predictions
    photos = tmp_path / "photos"
    shutil.copytree(root, photos)
    names = sorted(p.name for p in photos.iterdir())
    mine = photos / (Path(names[0]).stem + ".json")
    mine.write_text('{"mine": true}')
    writer = OutputWriter(
        str(tmp_path / "out"),
        ["labelme"],
        CLASSES,
        ExportOptions(labelme_next_to_images=True),
        str(photos),
        "gt",
    )
    for i, n in enumerate(names):
        writer.write(
            ImageItem(i, str(photos / n), Path(n).stem), read_bgr(str(photos / n)), Detections.empty(192, 256)
        )
    files = writer.close()
    assert files["labelme_kept"] == [str(mine)] and json.loads(mine.read_text()) == {"mine": True}
    assert len(files["labelme"]) == len(names) - 1
    doc = json.loads(Path(files["labelme"][0]).read_text())
    assert doc["imagePath"] == names[1] and doc["shapes"] == []
    assert len(load_dataset(files["labelme"], fmt="labelme", classes=CLASSES)) == len(names) - 1


def test_writer_rejects_bad_options(tmp_path):
    with pytest.raises(UserError, match="unknown output 'pdf'"):
        OutputWriter(str(tmp_path), ["overlay", "pdf"], CLASSES, ExportOptions(), str(tmp_path), "x")
    with pytest.raises(UserError, match="labelstudio.shape=rect"):
        OutputWriter(
            str(tmp_path), ["labelstudio"], CLASSES, ExportOptions(ls_shape="rect"), str(tmp_path), "x"
        )
