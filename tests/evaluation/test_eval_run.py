"""A tiny trained run is evaluated with ``tools/eval.py run=``: best checkpoint, full report, other split."""

import json

import pytest

from maskseg_d2.engine.evaluate import _dataset_for
from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError
from maskseg_d2.evaluation.report import evaluate_coco


def test_resolve_checkpoint_prefers_best_then_final_then_last(tmp_path):
    assert Run.resolve_checkpoint(str(tmp_path), "custom.pth") == "custom.pth"
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    assert Run.resolve_checkpoint(str(tmp_path)) == "model_0000099.pth"
    (tmp_path / "model_final.pth").write_bytes(b"")
    assert Run.resolve_checkpoint(str(tmp_path)) == "model_final.pth"
    (tmp_path / "model_best.pth").write_bytes(b"")
    assert Run.resolve_checkpoint(str(tmp_path)) == "model_best.pth"


@pytest.mark.slow
def test_eval_tool_on_a_trained_run(tiny_run, tmp_path, run_eval_tool):
    run_dir, train_results = tiny_run
    assert (run_dir / "model_best.pth").is_file()  # written by the best-checkpoint hook: the tool must pick it
    out = tmp_path / "eval"
    # threshold 0: even a 4-iteration model then predicts, so masks go through the whole report
    proc = run_eval_tool(
        f"run={run_dir}",
        "device=cpu",
        f"output={out}",
        "num_worst=2",
        "model_score_thresh=0.0",
        "score_thresh=0.0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model_best.pth" in proc.stdout and "| segm" in proc.stdout
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AR100", "ARl", "AP-car", "AP-sign board", "AP50-car"} <= set(saved[task])
        assert saved[task]["AP"] is not None and 0 <= saved[task]["AP"] <= 100
    for name in (
        "results.md",
        "results.csv",
        "ap_per_class.png",
        "pr_curves_segm.png",
        "confusion_segm.png",
        "worst_images.csv",
    ):
        assert (out / name).exists(), name
    worst = (out / "worst_images.csv").read_text().splitlines()[1:]
    assert len(worst) == 2 and len(list((out / "worst").glob("*.png"))) == 2

    # the files it leaves behind evaluate to the same numbers without the model (gt= pred= mode)
    again = evaluate_coco(str(out / "demo_val_coco_format.json"), str(out / "coco_instances_results.json"),
                          str(tmp_path / "files"), plots=False, num_worst=0)
    for task in ("bbox", "segm"):
        assert again.results[task]["AP"] == pytest.approx(saved[task]["AP"], abs=1e-9)


@pytest.mark.slow
def test_split_and_dataset_selection(tiny_run, demo_root):
    run = Run.open(str(tiny_run[0]), "model_final.pth", "cpu")
    assert (
        _dataset_for(run, None, "train")[1] == "demo_train"
        and _dataset_for(run, None, "val")[1] == "demo_val"
    )
    with pytest.raises(UserError, match="unknown split"):
        _dataset_for(run, None, "test")
    other = {"name": "demo2", "root": str(demo_root), "format": "labelme", "classes": ["sign board", "car"]}
    with pytest.raises(UserError, match="differ from the model's"):
        _dataset_for(run, other, "val")
    other["classes"] = ["car", "sign board"]
    assert _dataset_for(run, other, "val")[1] == "demo2_val"
