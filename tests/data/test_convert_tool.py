"""tools/convert.py and maskseg_d2.data.convert: exports -> one COCO file; bad input -> exit 2, one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskseg_d2.data import load_dataset
from maskseg_d2.data.convert import convert
from maskseg_d2.errors import UserError
from helpers.forked_tool import run_cases

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "tools" / "convert.py")
CLASSES = ["car", "sign board"]
W, H = 80, 60


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------------------- round trip


def test_convert_labelstudio_to_coco_round_trip(demo_root, tmp_path, tools):
    from detectron2.data.datasets import load_coco_json

    out = tmp_path / "out" / "coco.json"
    summary = convert(demo_root / "labelstudio.json", out, demo_root / "images", classes=CLASSES)
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["categories"] == [{"id": 1, "name": "car", "supercategory": ""},
                                 {"id": 2, "name": "sign board", "supercategory": ""}]
    assert [im["id"] for im in doc["images"]] == list(range(1, 17))
    assert all(not Path(im["file_name"]).is_absolute() for im in doc["images"])
    assert any(" " in im["file_name"] for im in doc["images"])  # the demo has spaced/unicode names
    assert summary.num_images == 16 and summary.num_annotations == len(doc["annotations"])
    assert all(a["area"] > 0 and a["bbox"][2] > 0 for a in doc["annotations"])
    source = {Path(d["file_name"]).name: d for d in load_dataset(demo_root / "labelstudio.json", demo_root / "images",
                                                                 fmt="labelstudio", classes=CLASSES)}
    ours = {Path(d["file_name"]).name: d for d in load_dataset(out, demo_root / "images", fmt="coco", classes=CLASSES)}
    d2 = {Path(d["file_name"]).name: d for d in load_coco_json(str(out), str(demo_root / "images"))}
    assert set(source) == set(ours) == set(d2)
    for name, d in source.items():
        for loaded, first_id in ((ours[name], 0), (d2[name], 1)):  # Detectron2 keeps the file's ids (from 1)
            assert (loaded["height"], loaded["width"]) == (d["height"], d["width"])
            assert [a["category_id"] - first_id for a in loaded["annotations"]] == [
                a["category_id"] for a in d["annotations"]]
            for a, b in zip(d["annotations"], loaded["annotations"]):
                ma, mb = (tools.annotation_mask(x, d["height"], d["width"]) for x in (a, b))
                assert tools.iou(ma, mb) > 0.99


def test_cli_labelme_folder_and_report(demo_root, tmp_path):
    out = tmp_path / "lm.json"
    proc = run_tool(str(demo_root / "labelme"), "--image-root", str(demo_root), "-o", str(out), "--report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}: 16 images" in proc.stdout and "1=car, 2=sign board (labelme)" in proc.stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert all(im["file_name"].startswith("images/") for im in doc["images"])
    report = tmp_path / "lm_report"
    assert {p.name for p in report.iterdir()} == {"report.md", "report.json", "mask_areas.png",
                                                  "instances_per_image.png", "overlays.png"}
    assert json.loads((report / "report.json").read_text())["num_images"] == 16


# ---------------------------------------------------------------------------------- malformed inputs


def _task(tid, image, results):
    return {"id": tid, "data": {"image": image},
            "annotations": [{"id": tid, "was_cancelled": False, "ground_truth": False, "result": results}]}


def _poly(rid, points, label="car", w=W, h=H):
    return {"id": rid, "type": "polygonlabels", "from_name": "label", "to_name": "image",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"points": [[x / w * 100, y / h * 100] for x, y in points], "polygonlabels": [label]}}


GOOD = [(10, 10), (50, 12), (45, 40)]


def _cases(tmp: Path, tools) -> dict[str, tuple[list[str], list[str]]]:
    """case -> (tool arguments, strings the one error line must contain)."""
    images = tmp / "images"
    tools.write_photo(images / "street.jpg", W, H)
    tools.write_photo(tmp / "secret.jpg", W, H)
    up = "/data/upload/3/e97d4735-street.jpg"

    def export(name, tasks) -> str:
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(tasks), encoding="utf-8")
        return str(path)

    ok = export("ok", [_task(1, up, [_poly("r1", GOOD)])])
    truncated = tmp / "truncated.json"
    truncated.write_text(Path(ok).read_text()[:-30])
    (tmp / "empty.json").write_text("")
    nan = _poly("r9", GOOD)
    nan["value"]["points"][1][0] = float("nan")
    lm = tmp / "lm"
    lm.mkdir()
    (lm / "a.json").write_text(json.dumps({"version": "5.4.1", "shapes": [], "imagePath": "a.jpg",
                                           "imageData": None, "imageHeight": H, "imageWidth": W}))
    coco = {"images": [{"id": 4, "file_name": "../secret.jpg", "width": W, "height": H}],
            "annotations": [], "categories": [{"id": 1, "name": "car"}]}
    root = ["--image-root", str(images), "-o", str(tmp / "out.json")]
    return {
        "truncated JSON": ([str(truncated), *root], [str(truncated), "line 1 column", "truncated"]),
        "missing image": (
            [export("missing", [_task(1, up, []), _task(2, "/data/upload/3/abcdef12-gone.jpg", [])]), *root],
            ["missing.json: task 2", "gone.jpg", "not found"]),
        "polygon of 2 points": (
            [export("two", [_task(1, up, [_poly("r1", GOOD), _poly("r2", [(1, 1), (9, 9)])])]), *root],
            ["two.json: task 1 result r2", "2 point(s)"]),
        "NaN coordinate": ([export("nan", [_task(1, up, [nan])]), *root],
                           ["nan.json: task 1 result r9", "NaN"]),
        "unknown label": (
            [export("unknown", [_task(1, up, [_poly("r1", GOOD, "tree")])]), *root, "--classes", "car"],
            ["unknown.json", "'tree' (1×", "task 1 result r1"]),
        "path traversal": ([export("traversal", [_task(3, "/data/local-files/?d=../secret.jpg", [])]), *root],
                           ["traversal.json: task 3", "'..'"]),
        "wrong image size": ([export("size", [_task(1, up, [_poly("r1", GOOD, w=100, h=60)])]), *root],
                             ["size.json: task 1", "100x60", "80x60"]),
        "empty file": ([str(tmp / "empty.json"), *root], [str(tmp / "empty.json"), "empty"]),
        "LabelMe missing image": ([str(lm), "-o", str(tmp / "out.json")],
                                  [str(lm / "a.json"), "a.jpg", "not found"]),
        "COCO path traversal": ([export("coco", coco), *root], ["coco.json: image 4", "'..'"]),
    }


def test_malformed_inputs_exit_2_with_one_line(tmp_path, tools):
    cases = _cases(tmp_path, tools)
    results = run_cases(TOOL, "maskseg_d2.data.convert", [a for a, _ in cases.values()])
    for (name, (_, needles)), res in zip(cases.items(), results):
        assert res["code"] == 2, (name, res["log"][-2000:])
        assert "Traceback" not in res["log"], (name, res["log"])
        (line,) = error_lines(res["log"])
        for needle in needles:
            assert needle in line, (name, needle, line)
    assert not (tmp_path / "out.json").exists()


def test_report_mode_lists_every_problem_and_writes_no_coco(tmp_path, tools):
    cases = _cases(tmp_path, tools)
    bad = json.loads(Path(cases["polygon of 2 points"][0][0]).read_text())
    nan = json.loads(Path(cases["NaN coordinate"][0][0]).read_text())[0]["annotations"][0]["result"][0]
    bad[0]["annotations"][0]["result"].append(nan)
    export = tmp_path / "both.json"
    export.write_text(json.dumps(bad))
    with pytest.raises(UserError) as e:
        convert(export, tmp_path / "out.json", tmp_path / "images", report_dir=tmp_path / "rep")
    assert "2 invalid item(s)" in str(e.value) and "report.md" in str(e.value)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(report["degenerate_polygons"]) == 2 and report["num_instances"] == 1
    assert not (tmp_path / "out.json").exists()
    assert np.isclose(report["mask_area"]["max"], report["mask_area"]["min"])
