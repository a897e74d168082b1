"""What tools/eval.py writes: tables with '-' and reasons, plots, confusion matrix, worst images."""

import csv
import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from maskseg_d2.evaluation.cocoeval import load_ground_truth, load_predictions
from maskseg_d2.evaluation.confusion import confusion_matrix
from maskseg_d2.evaluation.report import evaluate_coco
from helpers.synthetic import make_synthetic_coco
from maskseg_d2.evaluation.tables import format_ap_table


def _box_gt():
    """One 100x100 image; GT: a car and a sign; the car is found as a sign, the sign is missed, and a
    prediction lands on background; a low-score prediction is below the threshold."""
    box = lambda x, y, w, h: [[x, y, x + w, y, x + w, y + h, x, y + h]]  # noqa: E731
    gt = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 100, "width": 100},
            {"id": 2, "file_name": "b.png", "height": 100, "width": 100},
        ],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "sign"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 30, 30],
                "area": 900.0,
                "iscrowd": 0,
                "segmentation": box(10, 10, 30, 30),
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [60, 60, 30, 30],
                "area": 900.0,
                "iscrowd": 0,
                "segmentation": box(60, 60, 30, 30),
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 1,
                "bbox": [20, 20, 40, 40],
                "area": 1600.0,
                "iscrowd": 0,
                "segmentation": box(20, 20, 40, 40),
            },
        ],
    }
    preds = [
        {
            "image_id": 1,
            "category_id": 2,
            "bbox": [11, 11, 30, 30],
            "score": 0.9,
            "segmentation": box(11, 11, 30, 30),
        },
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [50, 0, 10, 10],
            "score": 0.8,
            "segmentation": box(50, 0, 10, 10),
        },
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [60, 60, 30, 30],
            "score": 0.1,
            "segmentation": box(60, 60, 30, 30),
        },
        {
            "image_id": 2,
            "category_id": 1,
            "bbox": [20, 20, 40, 40],
            "score": 0.7,
            "segmentation": box(20, 20, 40, 40),
        },
    ]
    return gt, preds


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_confusion_matrix_counts(task):
    gt, preds = _box_gt()
    g = load_ground_truth(gt)
    conf = confusion_matrix(g, load_predictions(preds, g), task, score_thresh=0.5)
    assert conf.labels == ["car", "sign", "background"]
    np.testing.assert_array_equal(
        conf.matrix,
        [
            [1, 1, 0],  # car: once found, once taken for a sign
            [0, 0, 1],  # sign: missed (its prediction scores 0.1)
            [1, 0, 0],
        ],
    )  # a car predicted on background
    e1, e2 = conf.per_image[1], conf.per_image[2]
    assert (e1.num_gt, e1.num_pred, e1.missed, e1.false) == (2, 2, 2, 2)
    assert (e2.missed, e2.false) == (0, 0)


def test_evaluate_coco_writes_tables_plots_and_worst_images(tmp_path, write_json):
    gt, preds = make_synthetic_coco(num_images=12, preds_per_image=8, seed=3, small_objects=False)
    images = tmp_path / "images"
    images.mkdir()
    for img in gt["images"][:6]:  # half of the images exist: the others are listed, not drawn
        cv2.imwrite(str(images / img["file_name"]), np.full((img["height"], img["width"], 3), 90, np.uint8))
    out = tmp_path / "out"
    report = evaluate_coco(
        write_json("gt.json", gt),
        write_json("pred.json", preds),
        str(out),
        image_root=str(images),
        num_worst=12,
    )
    for name in (
        "results.json",
        "results.csv",
        "results.md",
        "ap_per_class.png",
        "pr_curves_bbox.png",
        "pr_curves_segm.png",
        "confusion_bbox.png",
        "confusion_segm.png",
        "confusion_segm.csv",
        "worst_images.csv",
    ):
        assert (out / name).stat().st_size > 0, name

    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert list(saved[task])[:12] == [
            "AP",
            "AP50",
            "AP75",
            "APs",
            "APm",
            "APl",
            "AR1",
            "AR10",
            "AR100",
            "ARs",
            "ARm",
            "ARl",
        ]
        assert saved[task]["APs"] is None and saved[task]["AP-unused"] is None  # JSON null, never NaN / -100
        assert 0 < saved[task]["AP"] <= 100 and saved[task]["AP"] == pytest.approx(report.results[task]["AP"])

    md = (out / "results.md").read_text()
    assert "| segm" in md and "- APs, ARs (bbox, segm): no small GT objects (area < 32² px)" in md
    assert "AP-unused, AP50-unused (bbox, segm): no GT instances of 'unused'" in md
    assert "nan" not in md.lower() and "-100" not in md
    rows = list(csv.DictReader((out / "results.csv").open()))
    aps = next(r for r in rows if r["task"] == "segm" and r["metric"] == "APs")
    assert aps["value"] == "-" and aps["note"].startswith("no small GT objects")
    ap = next(r for r in rows if r["task"] == "segm" and r["metric"] == "AP")
    assert float(ap["value"]) == pytest.approx(saved["segm"]["AP"], abs=1e-4) and ap["note"] == ""

    worst = list(csv.DictReader((out / "worst_images.csv").open()))
    errors = [int(r["missed"]) + int(r["false"]) for r in worst]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    drawn = sorted((out / "worst").glob("*.png"))
    exist = {img["file_name"] for img in gt["images"][:6]}
    assert len(drawn) == sum(r["file_name"] in exist for r in worst) > 0
    side_by_side = cv2.imread(str(drawn[0]))
    img = next(i for i in gt["images"] if drawn[0].stem.endswith(i["file_name"][:-4]))
    assert side_by_side.shape[:2] == (img["height"] + 28, 2 * img["width"] + 8)  # caption; GT | gap | pred
    assert "image file(s) not found" in md


def test_format_ap_table_keeps_training_layout():
    old = {"bbox": {"AP": 12.345, "AP50": float("nan"), "AP75": 1.0, "APs": -1.0, "APm": 2.0, "APl": 3.0}}
    table = format_ap_table(old).splitlines()
    assert [c.strip() for c in table[0].split("|")[1:-1]] == [
        "task",
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
    ]
    assert [c.strip() for c in table[2].split("|")[1:-1]] == ["bbox", "12.3", "-", "1.0", "-", "2.0", "3.0"]
    assert len({len(line) for line in table}) == 1  # aligned


def test_no_predictions_report_says_why(tmp_path, write_json):
    gt, _ = make_synthetic_coco(num_images=3, preds_per_image=2, seed=4)
    report = evaluate_coco(write_json("gt.json", gt), write_json("pred.json", []), str(tmp_path / "o"))
    assert all(math.isnan(v) for v in report.results["segm"].values())
    assert "AP, AP50, AP75" in report.markdown and ": no predictions" in report.markdown


def test_importing_the_plotting_modules_leaves_the_matplotlib_backend_alone():
    """Notebooks keep their inline plots: no module of ours calls matplotlib.use() (it used to, at import)."""
    code = ("import matplotlib; matplotlib.use('svg'); import maskseg_d2.evaluation.plots, "
            "maskseg_d2.visualization.curves, maskseg_d2.data.dataset_report, maskseg_d2.evaluation.report; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"
