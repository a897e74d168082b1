"""``predict_source(backend=onnx|torchscript|auto)``: the run's exported model, exported once into ``<run>/export/``,
predicts the same instances as the eager model (class, score within 1e-3, mask IoU >= 0.98) through every output
kind and the video path; ``auto`` says which it chose; a missing onnxruntime is a one-line error."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskseg_d2.deploy import compare_detections, open_predictor
from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError
from maskseg_d2.predict import Detections, ExportOptions, VideoOptions, predict_source
from maskseg_d2.predict.detections import mask_boxes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["car", "sign board"]
ALL = ["overlay", "masks", "cutout", "coco", "labelstudio", "labelme"]


@pytest.fixture(scope="module")
def backend_run(train_tiny, tmp_path_factory) -> Path:
    """A copy (the backends export into it) of the 2-iteration run of tests/test_deploy.py, its mask predictor's
    weights multiplied by 100.

    Trained, its mask probabilities all sit within 0.44-0.53, a third of them within 0.01 of the 0.5 threshold, so
    ONNX Runtime's last-bit differences (1e-6) flip pixels (mask IoU 0.97) and a mask IoU bound would judge the
    threshold, not the backend. Scaled, the same network draws clear masks; training one that far (the shared
    100-iteration run) takes minutes on 2 cores.
    """
    src = train_tiny("solver.max_iter=2", "solver.warmup_iters=1", "solver.base_lr=0.002", "num_vis=0",
                     "logger=none")[0]
    dst = tmp_path_factory.mktemp("backend_run") / "run"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("export"))
    weights = Run.open(str(dst), device="cpu").d2cfg.MODEL.WEIGHTS
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    ckpt["model"] = {k: v * 100 if k.startswith("roi_heads.mask_head.predictor.") else v
                     for k, v in ckpt["model"].items()}
    torch.save(ckpt, weights)
    return dst


@pytest.fixture(scope="module")
def photos(demo_root, tmp_path_factory) -> Path:
    """Four demo photos enlarged 2.5x (640x480, a phone photo's scale) and a corrupt file. At the demo's own size
    (256x192) some masks have 35 pixels, where one pixel at the threshold is 3% of IoU."""
    folder = tmp_path_factory.mktemp("backend_photos") / "photos"
    folder.mkdir()
    for p in sorted((demo_root / "images").glob("*.jpg"))[:4]:
        cv2.imwrite(str(folder / p.name), cv2.resize(cv2.imread(str(p)), (640, 480), interpolation=cv2.INTER_CUBIC))
    (folder / "z_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return folder


def _run(run: Path, source: Path, out: Path, backend: str, **kw):
    kw = {"score_threshold": 0.01, "max_detections": 10, "batch_size": 2, "save": ["coco"], **kw}
    return predict_source(str(run), str(source), str(out), device="cpu", progress=False, backend=backend,
                          open_model=open_predictor, **kw)


def _as_detections(coco: dict) -> dict[str, Detections]:
    dets = {}
    for name, insts in coco.items():
        masks = np.stack([m for _, _, m in insts]) if insts else np.zeros((0, 1, 1), bool)
        dets[name] = Detections(mask_boxes(masks), np.array([s for _, s, _ in insts], np.float32),
                                np.array([c for c, _, _ in insts], np.int64), masks)
    return dets


def _assert_same_instances(ref: dict, other: dict) -> int:
    """Per image (COCO outputs read back): same count, each matched to one of the same class, score within 1e-3,
    mask IoU >= 0.98."""
    ref, other = _as_detections(ref), _as_detections(other)
    assert sorted(ref) == sorted(other)
    for name in ref:
        row = compare_detections(ref[name], other[name], min_iou=0.5)
        assert row["ref"] == row["other"] == row["matched"], (name, row)
        if row["matched"]:
            assert row["max_score_diff"] <= 1e-3 and row["min_mask_iou"] >= 0.98, (name, row)
    return sum(len(d) for d in ref.values())


def test_onnx_and_torchscript_predict_what_eager_predicts(backend_run, photos, tmp_path, assert_outputs_consistent,
                                                          read_coco, caplog):
    root = photos
    eager = _run(backend_run, root, tmp_path / "eager", "eager")
    assert eager.backend == "eager" and eager.instances > 0
    for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.ts")):
        out = tmp_path / fmt
        got = _run(backend_run, root, out, fmt, save=ALL, options=ExportOptions(ls_shape="brush"))
        assert got.backend == fmt and json.loads((out / "summary.json").read_text())["backend"] == fmt
        assert got.images == eager.images == 4 and [p for p, _ in got.skipped] == [str(root / "z_broken.jpg")]
        assert _assert_same_instances(read_coco(tmp_path / "eager"), read_coco(out)) == eager.instances == got.instances
        # every output kind, as with eager (brushes: exact; the scaled mask head draws ragged masks, whose polygons
        # a pixel-exact check cannot judge)
        assert_outputs_consistent(out, root, CLASSES, "brush")
        report = json.loads((backend_run / "export" / f"export_{fmt}.json").read_text())
        assert report["ok"] and report["meta"]["score_threshold"] == 0.01 and report["meta"]["max_detections"] == 100
        assert not [p for p in (backend_run / "export").iterdir() if p.name.startswith(".")]  # temp dir gone

    # exported once: a second prediction (higher threshold, lower cap, one class) reuses the file ...
    onnx = backend_run / "export" / "model.onnx"
    stamp = onnx.stat().st_mtime_ns
    cut = _run(backend_run, root, tmp_path / "cut", "onnx", score_threshold=0.02, max_detections=3, classes=["car"])
    ref = _run(backend_run, root, tmp_path / "cut_eager", "eager", score_threshold=0.02, max_detections=3,
               classes=["car"])
    assert onnx.stat().st_mtime_ns == stamp
    same = _assert_same_instances(read_coco(tmp_path / "cut_eager"), read_coco(tmp_path / "cut"))
    assert same == ref.instances == cut.instances
    # ... until the checkpoint is newer, or the prediction asks for more than the export kept
    checkpoint = backend_run / json.loads(onnx.with_name("export_onnx.json").read_text())["meta"]["checkpoint"]
    os.utime(checkpoint, ns=(stamp + 10**9, stamp + 10**9))
    caplog.set_level(logging.INFO, logger="maskseg_d2.deploy.backends")
    _run(backend_run, root, tmp_path / "again", "onnx")
    assert onnx.stat().st_mtime_ns > stamp and "the checkpoint is newer" in caplog.text

    # auto: ONNX on CPU when the export matched eager, in one line that says so
    caplog.clear()
    auto = _run(backend_run, root, tmp_path / "auto", "auto")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backend=auto")]
    assert auto.backend == "onnx" and len(lines) == 1 and lines[0].startswith("backend=auto: onnx — ONNX Runtime")


def test_onnx_video_frames_match_eager(backend_run, photos, tmp_path, read_coco):
    frames = [cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))[:4]]
    src = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()
    outs = {}
    for backend in ("eager", "onnx"):
        summary = _run(backend_run, src, tmp_path / backend, backend, save=["overlay", "coco"],
                       video=VideoOptions(show="false"))
        assert summary.kind == "video" and summary.images == 4 and summary.backend == backend
        assert summary.files["video"] == [str(tmp_path / backend / "clip.mp4")]
        outs[backend] = read_coco(tmp_path / backend)
    assert _assert_same_instances(outs["eager"], outs["onnx"]) > 0


def test_without_onnxruntime(backend_run, photos, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(UserError, match=r"^backend=onnx needs onnxruntime — pip install onnx onnxruntime"):
        _run(backend_run, photos, tmp_path / "onnx", "onnx")
    caplog.set_level(logging.INFO, logger="maskseg_d2.deploy.backends")
    auto = _run(backend_run, photos, tmp_path / "auto", "auto")
    assert auto.backend == "eager"
    assert "backend=auto: eager — onnxruntime not installed (pip install onnx onnxruntime" in caplog.text

    code = ("import runpy, sys; sys.modules['onnxruntime'] = None; "
            f"sys.argv = ['predict.py', 'run={backend_run}', 'input={photos}', 'backend=onnx', "
            f"'output={tmp_path / 'tool'}']; runpy.run_path('tools/predict.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: backend=onnx needs onnxruntime — pip install")
