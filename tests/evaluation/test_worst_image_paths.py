"""Worst-image drawing reads GT file names from an untrusted file: never outside image_root, skips counted."""

import logging

import cv2
import numpy as np

from maskseg_d2.evaluation.analysis import resolve_image_path
from maskseg_d2.evaluation.report import evaluate_coco

W, H = 40, 30


def _photo(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), value, np.uint8))


def test_resolve_image_path_stays_inside_image_root(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "outside"
    _photo(root / "a.png", 10)
    _photo(root / "sub" / "b.png", 20)
    _photo(outside / "secret.png", 30)
    assert resolve_image_path("a.png", str(root)) == (str(root / "a.png"), "")
    assert resolve_image_path("sub/../sub/b.png", str(root)) == (str(root / "sub" / "b.png"), "")
    assert resolve_image_path(str(root / "a.png"), str(root)) == (str(root / "a.png"), "")  # absolute, inside
    for name in ("../outside/secret.png", str(outside / "secret.png"), "../../etc/passwd", "/etc/passwd",
                 "sub/../../outside/secret.png"):
        assert resolve_image_path(name, str(root)) == (None, "outside image_root"), name
    assert resolve_image_path("gone.png", str(root)) == (None, "not found")
    assert resolve_image_path("a\x00.png", str(root)) == (None, "not found")
    for name in (None, "", 7, ["a.png"]):
        assert resolve_image_path(name, str(root)) == (None, "no file_name")
    # image_root=None: a run's own dataset (absolute paths written by the importers) is read as given
    assert resolve_image_path(str(outside / "secret.png"), None) == (str(outside / "secret.png"), "")


def test_worst_images_skip_and_count_what_cannot_be_drawn(tmp_path, write_json, caplog):
    root, outside = tmp_path / "images", tmp_path / "outside"
    _photo(root / "a.png", 10)
    _photo(root / "sub" / "b.png", 20)
    _photo(outside / "secret.png", 30)
    (root / "notes.png").write_text("not an image\n")
    names = ["a.png", "sub/b.png", str(root / "a.png"), "../outside/secret.png", str(outside / "secret.png"),
             "../../etc/passwd", "notes.png", None, "gone.png"]
    images, anns = [], []
    for i, name in enumerate(names, start=1):
        images.append({"id": i, "height": H, "width": W, **({"file_name": name} if name else {})})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100.0,
                     "iscrowd": 0, "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}
    preds = [{"image_id": 1, "category_id": 1, "bbox": [25, 15, 8, 8], "score": 0.9}]  # each image has errors
    with caplog.at_level(logging.WARNING):
        report = evaluate_coco(write_json("gt.json", gt), write_json("pred.json", preds),
                               str(tmp_path / "out"), image_root=str(root), num_worst=20, plots=False)
    drawn = sorted(p.name for p in (tmp_path / "out" / "worst").glob("*.png"))
    assert len(drawn) == 3 and not any("secret" in d or "passwd" in d for d in drawn), drawn
    assert np.isfinite(report.results["bbox"]["AP"])  # the tables do not depend on the drawings
    expected = ["worst images: 3 file_name(s) point outside image_root",
                "worst images: 1 image file(s) could not be read (e.g. 'notes.png': cannot identify image",
                "worst images: 1 image(s) without a file_name (e.g. image id 8)",
                "worst images: 1 image file(s) not found (e.g. 'gone.png')"]
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("worst images")]
    assert len(warnings) == 4 and all("\n" not in w for w in warnings), warnings
    for text in expected:
        assert sum(w.startswith(text) for w in warnings) == 1, (text, warnings)
        assert text in report.markdown
