"""The benchmarks stay runnable and their same-output checks can fail.

benchmarks/ are scripts, not tests (their speed goals are ratios measured side by side, never timed asserts), but
a benchmark whose comparison says "same" for different outputs would let a speed claim stand on wrong results. So:
the shared checks of benchmarks/_same.py and the importer benchmark's check must reject what differs (a mask
transposed, a class shifted, an instance missing, one COCO stat off), benchmarks/_timing.py must alternate the sides,
and the cheapest benchmarks run end to end with tiny sizes in a subprocess (a broken script fails CI).
"""
from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.registry import pip_install
from pycocotools import mask as mask_util

from maskseg_d2.data import read_dataset
from maskseg_d2.predict import Detections

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/ on sys.path, as ``python benchmarks/bench_x.py`` has it; returns an importer."""
    monkeypatch.syspath_prepend(str(BENCH))
    return __import__


def _run(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _square_detections(classes=(0, 1, 0), size: int = 32) -> Detections:
    """Three non-symmetric instances on a square image (a transposed mask keeps its shape but not its pixels)."""
    masks = np.zeros((len(classes), size, size), bool)
    masks[0, 2:6, 3:20] = True
    masks[1, 10:30, 12:16] = True
    masks[2, 20:24, 1:9] = True
    boxes = np.array([[3, 2, 20, 6], [12, 10, 16, 30], [1, 20, 9, 24]], np.float32)
    return Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array(classes, np.int64), masks)


# ----------------------------------------------------------------------------------------- _same / _timing


def test_same_detections_accepts_equal_output_in_any_order(bench):
    same = bench("_same")
    a = _square_detections()
    b = a.select(np.array([2, 0, 1]))  # another order, as near-equal scores may give
    report = same.check_same_detections([a, a], [a, b], ["x.jpg", "y.jpg"])
    assert report == {"images": 2, "instances": 6, "min_mask_iou": 1.0}


@pytest.mark.parametrize("break_it, expected", [
    ("transpose", "mask IoU"),
    ("shift_class", "matched"),
    ("drop_one", r"3 instances \(reference\) vs 2 \(ours\)"),
])
def test_same_detections_rejects_what_differs(bench, break_it, expected):
    same = bench("_same")
    a = _square_detections()
    if break_it == "transpose":  # boxes stay (a mask-only bug), pixels move
        b = Detections(a.boxes, a.scores, a.classes, a.masks.transpose(0, 2, 1).copy())
    elif break_it == "shift_class":
        b = Detections(a.boxes, a.scores, (a.classes + 1) % 2, a.masks)
    else:
        b = a.select(np.array([0, 1]))
    with pytest.raises(same.Mismatch, match=expected) as info:
        same.check_same_detections([a], [b], ["img.jpg"])
    assert "img.jpg" in str(info.value)


def test_same_stats_is_exact_to_1e_9(bench):
    same = bench("_same")
    ref = {"bbox": np.linspace(0.1, 0.9, 12), "segm": np.full(12, -1.0)}
    assert same.check_same_stats(ref, {k: v.copy() for k, v in ref.items()}) == 0.0
    off = {"bbox": ref["bbox"].copy(), "segm": ref["segm"].copy()}
    off["bbox"][8] += 1e-6
    with pytest.raises(same.Mismatch, match="bbox AR100"):
        same.check_same_stats(ref, off)
    nan = {"bbox": ref["bbox"].copy(), "segm": ref["segm"].copy()}
    nan["segm"][0] = np.nan
    with pytest.raises(same.Mismatch, match="segm AP: -1.0 vs nan"):
        same.check_same_stats(ref, nan)


def test_mismatch_exits_1_with_the_reason(bench, capsys):
    same = bench("_same")

    @same.exit_on_mismatch
    def main():
        raise same.Mismatch("image 3: 20 instances vs 19")

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    assert "MISMATCH: image 3: 20 instances vs 19" in capsys.readouterr().err


def test_interleave_alternates_the_order(bench):
    timing = bench("_timing")
    calls = []

    def side(name):
        return lambda r: (calls.append((r, name)), timing.Sample({"total": 1.0 if name == "a" else 0.5}))[1]

    out = timing.interleave({"a": side("a"), "b": side("b")}, 3, log=None)
    assert calls == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]
    assert timing.paired_ratios(out["a"], out["b"], "total") == [2.0, 2.0, 2.0]
    assert "**2.00x**" in timing.ratio_table(out, "a", "b", [("total", "total")])


# --------------------------------------------------------------------------- the importer benchmark's check


def _fake_sdk_dump(bi, result, dump: Path) -> None:
    """What the SDK side writes (its COCO file, brush masks as runs), made from our dicts: equal by construction."""
    images, anns, runs = [], [], []
    cats = [{"id": i, "name": n} for i, n in enumerate(result.thing_classes)]
    for k, d in enumerate(sorted(result.dicts, key=lambda d: d["file_name"])):
        name = Path(d["file_name"]).name
        images.append({"id": k, "width": d["width"], "height": d["height"], "file_name": f"../up/{k:08x}-{name}"})
        brush = {}
        for a in d["annotations"]:
            if isinstance(a["segmentation"], list):
                anns.append({"image_id": k, "category_id": a["category_id"], "segmentation": a["segmentation"],
                             "bbox": a["bbox"]})
            else:
                label = result.thing_classes[a["category_id"]]
                brush[f"brush-{label}-0"] = bi._runs(mask_util.decode(a["segmentation"]).astype(bool))
        runs.append(brush)
    (dump / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (dump / "brush_runs.json").write_text(json.dumps(runs))


def test_importer_check_rejects_a_transposed_brush_mask(bench, tmp_path):
    bi = bench("bench_labelstudio_import")
    export = bi.make_export(tmp_path, 3, 48, 48)  # square: a transposed mask keeps its shape
    result = read_dataset(export, tmp_path / "images", fmt="labelstudio")
    dump = tmp_path / "dump"
    dump.mkdir()
    _fake_sdk_dump(bi, result, dump)
    assert bi.check_same(result, dump) == 9
    brush = next(a for a in result.dicts[1]["annotations"] if isinstance(a["segmentation"], dict))
    mask = mask_util.decode(brush["segmentation"])
    brush["segmentation"] = mask_util.encode(np.asfortranarray(mask.T))
    with pytest.raises(bi.Mismatch, match="task 2 .* brush .*differs"):
        bi.check_same(result, dump)


def test_importer_check_rejects_a_moved_polygon(bench, tmp_path):
    bi = bench("bench_labelstudio_import")
    export = bi.make_export(tmp_path, 2, 64, 48)
    result = read_dataset(export, tmp_path / "images", fmt="labelstudio")
    dump = tmp_path / "dump"
    dump.mkdir()
    _fake_sdk_dump(bi, result, dump)
    poly = result.dicts[0]["annotations"][0]["segmentation"][0]
    poly[0] += 0.01  # a hundredth of a pixel
    with pytest.raises(bi.Mismatch, match="polygon 0: coordinates differ"):
        bi.check_same(result, dump)


# ------------------------------------------------------------------------------------------- end to end


def test_bench_eval_runs_and_checks_stats():
    proc = _run("bench_eval.py", "--images", "12", "--preds", "5", "--repeats", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stats identical to pycocotools in all 3 repeats" in proc.stdout
    assert "| load + eval (both tasks) |" in proc.stdout


LS_SDK_PIN = "label-studio-sdk==2.1.2"  # as benchmarks/bench_labelstudio_import.py and tests/data/conftest.py
LS_VENV = ROOT / ".venv-ls"


@pytest.mark.integration
def test_bench_labelstudio_import_matches_the_sdk():
    """Against the real label-studio-sdk: same instances, then the ratio. Skips only when the registry is down."""
    marker = LS_VENV / f".maskseg-{LS_SDK_PIN}"
    if not marker.exists():
        LS_VENV.mkdir(exist_ok=True)
        with open(LS_VENV / ".build.lock", "w") as lock:  # one build at a time (tests/data/conftest.py too)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], check=True)
                pip_install(LS_VENV / "bin" / "python", LS_SDK_PIN, timeout=600)
                marker.touch()
    proc = _run("bench_labelstudio_import.py", "--tasks", "6", "--width", "96", "--height", "64", "--repeats", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same output: 18 instances of 6 tasks identical" in proc.stdout


@pytest.mark.slow
def test_profile_demo_step_accounts_for_the_whole_iteration():
    proc = _run("profile_demo_step.py", "--iters", "1", "--warmup", "1", "--images", "8", "--top", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = dict(re.findall(r"^\| ([^|*]+?) \| (-?\d+) \| -?\d+ % \|$", proc.stdout, flags=re.M))
    total = int(re.search(r"^\| \*\*iteration\*\* \| \*\*(\d+)\*\* \|", proc.stdout, flags=re.M).group(1))
    assert len(rows) == 11 and all(int(ms) >= 0 for ms in rows.values()), rows  # every part clocked, none negative
    assert abs(sum(int(ms) for ms in rows.values()) - total) <= len(rows), (rows, total)  # the parts add up
    assert "aten::convolution_backward" in proc.stdout  # the operator table covers backward
