"""Validation report: counts, findings (degenerate, outside, empty, duplicates) and the PNGs."""
from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from maskseg_d2.data import read_dataset
from maskseg_d2.data.dataset_report import write_report

W, H = 80, 60


def _shape(label, points):
    return {"label": label, "points": [list(map(float, p)) for p in points], "group_id": None,
            "shape_type": "polygon", "flags": {}}


def _labelme(folder, name, shapes):
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpg", "imageData": None,
           "imageHeight": H, "imageWidth": W}
    (folder / f"{name}.json").write_text(json.dumps(doc))


def test_report_findings_and_files(tmp_path, tools):
    lm = tmp_path / "lm"
    for name in ("a", "b", "c"):
        tools.write_photo(lm / f"{name}.jpg", W, H, seed=ord(name))
    shutil.copy(lm / "a.jpg", lm / "a copy.jpg")  # same bytes, another name
    big = [(0, 0), (40, 0), (40, 30), (0, 30)]  # 1200 px²: medium
    outside = _shape("car", [(60, 40), (95, 40), (95, 58)])  # reaches x = 95; 315 px² in the image: small
    _labelme(lm, "a", [_shape("car", big), outside, _shape("sign", [(5, 5), (9, 9)])])  # 2 points: degenerate
    _labelme(lm, "a copy", [_shape("sign", [(10, 10), (14, 10), (14, 14)])])  # 16 px²: small
    _labelme(lm, "b", [_shape("car", [(1, 1), (5, 5), (9, 9)])])  # zero area
    _labelme(lm, "c", [])  # no instances
    res = read_dataset(lm, strict=False)
    assert [k for k, _ in res.problems] == ["fewer than 3 points", "zero area"]
    report = write_report(res, tmp_path / "report", max_overlays=2)
    assert report["classes"] == {"car": 2, "sign": 1}
    assert report["instances_per_image"] == {"min": 0, "mean": 0.75, "max": 2,
                                             "histogram": {"0": 2, "1": 1, "2": 1}}
    assert report["mask_area"]["small"] == 2 and report["mask_area"]["medium"] == 1  # 315, 16 | 1200 px²
    assert len(report["degenerate_polygons"]) == 2 and "a.json shape 2" in report["degenerate_polygons"][0]
    (outside,) = report["outside_image"]
    assert outside["image"] == "a.jpg" and outside["instance"] == 1 and outside["extent"][2] == 95.0
    assert report["empty_images"] == ["b.jpg", "c.jpg"]  # b lost its only shape
    assert report["duplicate_images"] == [["a copy.jpg", "a.jpg"]]
    assert report["overlays"] == 2
    for name in ("report.md", "report.json", "mask_areas.png", "instances_per_image.png", "overlays.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    grid = np.asarray(Image.open(tmp_path / "report" / "overlays.png"))
    assert grid.shape[1] == 2 * 320 and grid.std() > 10  # two tiles, drawn
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| car | 2 |" in md and "Duplicate images (same bytes): 1" in md and "a copy.jpg = a.jpg" in md
