"""What the GPU tests and benchmarks/bench_gpu_train.py run, checked on CPU so a typo in them fails here.

The instance comparison of tests/gpu/test_cuda.py must flag what fp16 must not change (class, a missing instance,
a mask that moved, a score far off) and accept what it may (scores a hair apart, an instance at the cut-off);
its predictor runner must agree with itself on CPU; the benchmark must refuse a CUDA-less machine in one line and
run its training steps and report on CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.predictors import instance_mismatches, run_both

from maskseg_d2.engine.run import Run
from maskseg_d2.predict import Detections, read_bgr

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_train", ROOT / "benchmarks" / "bench_gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dets(boxes_xyxy, classes, scores, h=40, w=60) -> Detections:
    masks = np.zeros((len(boxes_xyxy), h, w), bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes_xyxy):
        m[y0:y1, x0:x1] = True
    return Detections(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int64), masks)


REF = _dets([(0, 0, 20, 20), (30, 5, 50, 35), (5, 25, 25, 38)], [0, 1, 0], [0.95, 0.80, 0.61])


@pytest.mark.parametrize("got, expected", [
    (REF, []),
    (_dets([(30, 5, 50, 35), (0, 0, 20, 20), (5, 25, 25, 38)], [1, 0, 0], [0.79, 0.96, 0.62]), []),  # reordered
    (_dets([(0, 0, 20, 21), (30, 5, 50, 35), (5, 25, 25, 38)], [0, 1, 0], [0.95, 0.80, 0.61]), []),  # 1 row
    (_dets([(0, 0, 20, 20), (30, 5, 50, 35)], [0, 1], [0.95, 0.80]), ["reference only: class 0, score 0.6100"]),
    (_dets([(0, 0, 20, 20), (30, 5, 50, 35), (5, 25, 25, 38)], [0, 0, 0], [0.95, 0.80, 0.61]),
     ["ours only: class 0, score 0.8000", "reference only: class 1, score 0.8000"]),  # class changed
    (_dets([(0, 0, 20, 20), (30, 5, 50, 35), (5, 25, 25, 38)], [0, 1, 0], [0.95, 0.70, 0.61]),
     ["class 1: scores 0.7000 vs 0.8000"]),  # score off by 0.1
    (_dets([(0, 0, 20, 20), (30, 5, 50, 30), (5, 25, 25, 38)], [0, 1, 0], [0.95, 0.80, 0.61]),
     ["class 1: scores 0.8000 vs 0.8000, mask IoU 0.833"]),  # mask lost its bottom 5 rows
])
def test_instance_mismatches_flags_only_what_fp16_must_not_change(got, expected):
    problems = instance_mismatches(got, REF, score_threshold=0.5, max_detections=10)
    assert [p[:len(e)] for p, e in zip(problems, expected)] == expected and len(problems) == len(expected), problems


def test_instances_at_the_cut_off_may_be_on_one_side_only():
    at_threshold = _dets([(0, 0, 20, 20), (30, 5, 50, 35)], [0, 1], [0.95, 0.51])
    assert instance_mismatches(at_threshold, REF.select(np.array([0])), 0.5, 10) == []  # 0.51: within 0.02
    capped = REF.select(np.array([0, 1]))  # the reference hit a cap of 2 detections
    assert instance_mismatches(REF, capped, 0.5, 2) == []  # 0.61 < 0.80, the reference's last: it fell off the end
    extra = _dets([(0, 0, 20, 20), (30, 5, 50, 35), (52, 0, 60, 8)], [0, 1, 1], [0.95, 0.80, 0.90])
    assert instance_mismatches(extra, capped, 0.5, 2) == ["ours only: class 1, score 0.9000 (best IoU 0.000 "
                                                           "with any class)"]  # 0.90 would have been kept


@pytest.mark.slow
def test_run_both_predictors_agree_on_cpu(predict_run, demo_root):
    run = Run.open(str(predict_run), device="cpu", score_threshold=0.0, max_detections=10)
    images = [read_bgr(str(p)) for p in sorted((demo_root / "images").glob("*.jpg"))[:2]]
    pairs, fp16 = run_both(run.d2cfg, images, amp=True)
    assert not fp16  # autocast fp16 is CUDA-only: BatchPredictor ignores amp on CPU
    assert all(len(ref) > 0 for _, ref in pairs)
    assert [instance_mismatches(got, ref, 0.0, 10, score_atol=1e-4, min_iou=0.99) for got, ref in pairs] == [[], []]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the benchmark runs for real")
def test_bench_gpu_train_without_cuda_exits_2_with_one_line(capsys):
    assert _bench().main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench_gpu_train: no CUDA GPU visible to torch")


@pytest.mark.slow
def test_bench_gpu_train_steps_and_report_on_cpu(demo_root, tmp_path, capsys):
    bench = _bench()
    cfg = bench.build_cfg(demo_root, tmp_path, size=96, max_size=128, batch=1, device="cpu", amp=True)
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.MASK_ON and not cfg.SOLVER.AMP.ENABLED  # AMP: CUDA only
    batches = bench.map_batches(cfg, batch=1, count=2)
    assert batches[0][0]["image"].shape[1:] == (96, 128)  # demo images are 256 x 192
    torch.manual_seed(0)
    state = bench.build_model(cfg).state_dict()
    sides = {"fp32": bench.Side(cfg, state, batches), "amp": bench.Side(cfg, state, batches)}
    results = bench.run(sides, iters=1, warmup=0, repeats=2)
    assert [len(v) for v in results.values()] == [2, 2] and sides["amp"].iter == 2
    bench.report(results, argparse.Namespace(batch=1, size=96, max_size=128, iters=1), "cpu")
    out = capsys.readouterr().out
    assert "AMP / fp32: **" in out and "| model zoo anchor: 16 img / 0.261 s on 8 V100, fp32, 800 px | 7.7" in out
