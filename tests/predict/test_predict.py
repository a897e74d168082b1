"""A tiny trained run predicts a folder of awkward images, a video, and through tools/predict.py.

Four training iterations give junk scores: predictions use ``score_threshold=0`` and a cap on
detections, and the tests check that every output agrees with every other, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.engine import DefaultPredictor
from hydra import compose, initialize_config_dir

from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError
from maskseg_d2.predict import (
    BatchPredictor,
    Detections,
    ExportOptions,
    VideoOptions,
    predict,
    predict_source,
    read_bgr,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["car", "sign board"]
ALL = ["overlay", "masks", "cutout", "coco", "labelstudio", "labelme"]


def test_folder_every_output_consistent_corrupt_skipped(
    predict_run, awkward_folder, tmp_path, assert_outputs_consistent
):
    root, out = awkward_folder["root"], tmp_path / "out"
    summary = predict_source(
        str(predict_run),
        str(root),
        str(out),
        score_threshold=0.0,
        device="cpu",
        save=ALL,
        max_detections=4,
        batch_size=2,
        progress=False,
    )
    assert summary.images == len(awkward_folder["readable"]) == len(summary.overlays)
    assert [Path(p).name for p, _ in summary.skipped] == [awkward_folder["broken"]]
    assert summary.instances > 0 and summary.images_per_second > 0
    coco = assert_outputs_consistent(out, root, CLASSES, "auto")  # the default labelstudio.shape
    assert sum(len(v) for v in coco.values()) == summary.instances
    images = json.loads((out / "coco_images.json").read_text())
    assert [im["id"] for im in images["images"]] == [1, 2, 3, 4, 6]  # broken f_broken.jpg was number 5
    assert images["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "sign board"}]
    exif = next(im for im in images["images"] if im["file_name"].endswith(awkward_folder["exif"]))
    assert (exif["height"], exif["width"]) == awkward_folder["exif_size"]  # display orientation
    lm = json.loads((out / "labelme" / "e_rotated.json").read_text())
    assert (lm["imageHeight"], lm["imageWidth"]) == awkward_folder["exif_size"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["images"] == 5 and saved["skipped"][0]["file"].endswith("f_broken.jpg")
    assert saved["skipped"][0]["reason"]
    assert (out / "overlay" / "sub" / "b_photo.jpg").is_file()


def test_class_filter_brush_and_mask_shapes_stay_exact(
    predict_run, awkward_folder, tmp_path, assert_outputs_consistent
):
    root, out = awkward_folder["root"], tmp_path / "out"
    opts = ExportOptions(ls_shape="brush", labelme_shape="mask", overlay_format="jpg")
    summary = predict_source(
        str(predict_run),
        str(root),
        str(out),
        0.0,
        device="cpu",
        save=ALL,
        classes=["sign board"],
        max_detections=4,
        options=opts,
        progress=False,
    )
    coco = assert_outputs_consistent(out, root, CLASSES, "brush", min_iou=1.0)
    assert {c for v in coco.values() for c, _, _ in v} <= {2} and summary.instances == sum(
        map(len, coco.values())
    )
    with pytest.raises(UserError, match="'truck' is not a class"):
        predict_source(str(predict_run), str(root), str(out), device="cpu", classes=["truck"], progress=False)


def test_batched_predictor_matches_detectron2_default_predictor(predict_run, awkward_folder):
    run = Run.open(str(predict_run), device="cpu", score_threshold=0.0, max_detections=10)
    images = [read_bgr(str(awkward_folder["root"] / n)) for n in ("a_photo.jpg", "sub/b_photo.jpg")]
    batched = BatchPredictor(run.d2cfg)
    ours = batched([batched.preprocess(im) for im in images])
    reference = DefaultPredictor(run.d2cfg)
    for im, got in zip(images, ours):
        ref = Detections.from_instances(reference(im)["instances"])
        ref = ref.select(ref.masks.any(axis=(1, 2)))
        assert len(got) == len(ref) > 0
        assert np.allclose(got.scores, ref.scores, atol=1e-4) and np.allclose(got.boxes, ref.boxes, atol=0.05)
        assert np.mean([(a == b).mean() for a, b in zip(got.masks, ref.masks)]) > 0.999


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_in_annotated_video_out(predict_run, demo_root, tmp_path):
    frames = [cv2.imread(str(p)) for p in sorted((demo_root / "images").glob("*.jpg"))[:6]]
    src = tmp_path / "clip.mp4"
    _write_video(src, frames)
    summary = predict_source(
        str(predict_run),
        str(src),
        str(tmp_path / "out"),
        0.0,
        device="cpu",
        max_detections=3,
        save=["overlay", "coco", "masks"],
        batch_size=4,
        video=VideoOptions(show="auto"),
        progress=False,
    )
    assert summary.kind == "video" and summary.images == 6
    out_video = tmp_path / "out" / "clip.mp4"
    assert summary.files["video"] == [str(out_video)]
    cap = cv2.VideoCapture(str(out_video))
    n, size = (
        int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    ok, first = cap.read()
    cap.release()
    assert ok and n == 6 and size == (frames[0].shape[1], frames[0].shape[0])
    assert np.abs(first.astype(int) - frames[0]).mean() > 0.5  # drawn on (masks, FPS label)
    results = json.loads((tmp_path / "out" / "coco_results.json").read_text())
    assert {r["image_id"] for r in results} <= set(range(1, 7)) and len(results) == summary.instances
    assert not (tmp_path / "out" / "masks").exists()  # per-image kinds do not apply to a video
    limited = predict_source(
        str(predict_run),
        str(src),
        str(tmp_path / "out2"),
        device="cpu",
        video=VideoOptions(max_frames=2, codec="MJPG"),
        progress=False,
    )
    assert limited.images == 2 and limited.files["video"][0].endswith("clip.avi")


def _tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "predict.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_predict_tool(predict_run, awkward_folder, tmp_path):
    res = _tool(
        f"run={predict_run}",
        f"input={awkward_folder['root']}",
        f"output={tmp_path / 'out'}",
        "score_threshold=0.0",
        "max_detections=2",
        "save=[overlay,labelstudio]",
        "device=cpu",
        "labelstudio.shape=brush",
        "labelstudio.from_name=brush",
        "progress=false",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "predicted 5 image(s)" in res.stdout and "skipped 1 unreadable file(s)" in res.stdout
    tasks = json.loads((tmp_path / "out" / "labelstudio_predictions.json").read_text())
    results = [r for t in tasks for r in t["predictions"][0]["result"]]
    assert (
        results
        and {r["from_name"] for r in results} == {"brush"}
        and {r["type"] for r in results} == {"brushlabels"}
    )
    bad = _tool(f"run={tmp_path / 'nope'}", f"input={awkward_folder['root']}", cwd=tmp_path)
    assert (
        bad.returncode == 2 and bad.stderr.strip().startswith("error: run=") and "Traceback" not in bad.stderr
    )


def test_predict_config_errors_and_webcam_without_camera(predict_run, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("predict", overrides=[f"run={predict_run}"])
    with pytest.raises(UserError, match="run= and input= are required"):
        predict(cfg)
    with pytest.raises(UserError, match="webcam 9: OpenCV cannot open it"):
        predict_source(str(predict_run), 9, str(tmp_path / "cam"), device="cpu", progress=False)
