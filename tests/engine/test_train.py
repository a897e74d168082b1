"""End to end on CPU with real Detectron2: a few training iterations write every run-dir artifact (best
checkpoint, validation loss, curves, an offline W&B run); resume continues; NaN stops in one line;
tools/eval.py re-evaluates the run to the same numbers; predict draws masked images."""
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from helpers.wandb_offline import find_offline_runs, read_history
from maskseg_d2.engine import train
from maskseg_d2.engine.checkpoint import SafeCheckpointer, checkpoint_files, has_finite_weights
from maskseg_d2.engine.evaluate import evaluate_run
from maskseg_d2.engine.run import Run
from maskseg_d2.errors import UserError
from maskseg_d2.predict import predict_source

pytestmark = pytest.mark.slow


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines()]


def _same(a, b):
    return (a is None and b is None) or (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-6


def test_run_dir_holds_every_artifact(tiny_run):
    run_dir, results = tiny_run
    for name in ("config.yaml", "config_resolved.yaml", "run_info.json", "model_final.pth", "metrics.json",
                 "eval/results.json", "last_checkpoint", "model_best.pth", "best_metric.json", "curves.png"):
        assert (run_dir / name).exists(), name
    assert list(run_dir.glob("events.out.tfevents.*")), "TensorBoard events stay with logger=wandb"
    info = json.loads((run_dir / "run_info.json").read_text())
    assert len(info["dataset"]["hash"]) == 64 and info["dataset"]["thing_classes"] == ["car", "sign board"]
    assert "commit" in info["git"] and info["environment"]["detectron2"]
    assert info["weights"] == {"requested": "", "loaded": ""} and info["schedule"]["max_iter"] == 4
    saved = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(saved) >= {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-car", "AP-sign board"} <= set(saved[task])
        assert 0 <= saved[task]["AP"] <= 100  # a number: score threshold 0 gives predictions
    metrics = _metrics(run_dir)
    assert any("total_loss" in m and math.isfinite(m["total_loss"]) for m in metrics)
    assert "MODEL:" in (run_dir / "config.yaml").read_text() and "MASKSEG:" in (run_dir / "config.yaml").read_text()
    assert len(list((run_dir / "vis").glob("*.png"))) == 2
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_periodic_eval_and_validation_loss_in_metrics_json(tiny_run):
    run_dir, results = tiny_run
    evals = {m["iteration"]: m for m in _metrics(run_dir) if "segm/AP" in m}
    assert sorted(evals) == [1, 4]  # every 2 iterations (iteration 1), and after the last one
    for m in evals.values():
        parts = [v for k, v in m.items() if k.startswith("val/loss_")]
        assert {"val/loss_cls", "val/loss_mask", "val/loss_box_reg"} <= set(m)
        assert math.isfinite(m["val/total_loss"]) and m["val/total_loss"] == pytest.approx(sum(parts))
    assert results["val"]["total_loss"] == pytest.approx(evals[4]["val/total_loss"])  # for sweeps on val loss
    assert "val" not in json.loads((run_dir / "eval" / "results.json").read_text())  # COCO layout kept


def test_best_checkpoint_and_its_metric_are_recorded(tiny_run):
    run_dir, _ = tiny_run
    best = json.loads((run_dir / "best_metric.json").read_text())
    assert best["metric"] == "segm/AP" and best["mode"] == "max" and best["checkpoint"] == "model_best.pth"
    evals = {m["iteration"]: m["segm/AP"] for m in _metrics(run_dir) if "segm/AP" in m}
    assert best["iteration"] in evals and best["value"] == pytest.approx(evals[best["iteration"]])
    assert best["value"] == pytest.approx(max(evals.values()))
    state = torch.load(run_dir / "model_best.pth", map_location="cpu", weights_only=True)
    assert state["trainer"]["hooks"]["BestCheckpointer"]["best_metric"] == pytest.approx(best["value"])


def test_offline_wandb_run_holds_ap_and_images(tiny_run):
    run_dir, results = tiny_run
    (wb,) = find_offline_runs(str(run_dir))
    history = read_history(wb)
    ap = {row["iteration"]: row["segm/AP"] for row in history if "segm/AP" in row}
    assert sorted(ap) == [1, 4] and ap[4] == pytest.approx(results["segm"]["AP"])
    assert any("bbox/AP-sign board" in row and "val/total_loss" in row for row in history)
    assert any("total_loss" in row and "lr" in row and "time" in row for row in history)
    images = [row for row in history if "val/predictions/filenames" in row]
    assert [row["iteration"] for row in images] == [1, 4] and all(row["val/predictions/count"] == 2 for row in images)
    for row in images:
        for name in row["val/predictions/filenames"]:
            assert (Path(wb) / "files" / name).stat().st_size > 0
        masks = [m for m in row["val/predictions/all_masks"] if m]  # None: an image with neither
        assert any({"predictions", "ground_truth"} <= set(m) for m in masks)
        for m in masks:
            assert all((Path(wb) / "files" / layer["path"]).is_file() for layer in m.values())
        assert all({"predictions", "ground_truth"} <= set(b) for b in row["val/predictions/all_boxes"])
    tables = sorted((Path(wb) / "files" / "media" / "table").rglob("per_class_AP*.table.json"))
    table = json.loads(tables[-1].read_text())
    assert table["columns"] == ["class", "bbox AP", "segm AP"]
    assert [r[0] for r in table["data"]] == ["car", "sign board"]
    assert table["data"][0][2] == pytest.approx(results["segm"]["AP-car"])


def test_resume_continues_from_the_saved_iteration_and_early_stops(tiny_run, train_cfg, tmp_path):
    src, _ = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("model_0*.pth", "wandb", "vis"))

    # best/early stopping on the validation loss (always finite), min_delta so large nothing improves:
    # evaluations at iterations 4 (best) and 5 (no improvement, patience 1) -> stop after iteration 5.
    cfg = train_cfg(run_dir, "resume=true", "solver.max_iter=20", "solver.eval_period=1",
                            "solver.early_stopping.patience=1", "solver.early_stopping.min_delta=1e9",
                            "solver.best.metric=val/total_loss", "solver.best.mode=min", "logger=none", "num_vis=0",
                            "d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.05")
    train(cfg)
    # Detectron2's own log line: continues after iteration 3 (the 4th) of the first run, not from 0
    assert "Starting training from iteration 4" in (run_dir / "log.txt").read_text()
    new = _metrics(run_dir)[len(_metrics(src)):]
    assert min(m["iteration"] for m in new) >= 4
    final = torch.load(run_dir / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 5  # stopped early, cleanly, model_final written
    assert final["trainer"]["_trainer"]["optimizer"]["state"], "optimizer momentum is saved for resume"
    assert (run_dir / "last_checkpoint").read_text() == "model_final.pth"
    best = json.loads((run_dir / "best_metric.json").read_text())
    assert best["metric"] == "val/total_loss" and best["mode"] == "min"


def test_resume_without_checkpoint_is_one_line(train_cfg, tmp_path):
    cfg = train_cfg(tmp_path / "empty", "resume=true", "logger=none")
    with pytest.raises(UserError, match=r"resume: .*last_checkpoint does not exist .* resume=<run dir> or resume=last"):
        train(cfg)


def test_nan_loss_stops_with_cause_and_keeps_last_good_checkpoint(train_cfg, tmp_path):
    run_dir = tmp_path / "run"
    cfg = train_cfg(run_dir, "solver.base_lr=10000", "solver.warmup_iters=0",
                            "solver.max_iter=6", "solver.checkpoint_period=1", "logger=none", "num_vis=0")
    with pytest.raises(UserError) as info:
        train(cfg)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("training diverged: the loss became NaN/Inf at iteration")
    assert "solver.base_lr (now 10000, try 1000)" in msg and "solver.warmup_iters" in msg and "BN/GN" in msg
    kept = (run_dir / "last_checkpoint").read_text()
    assert f"last good checkpoint kept: {run_dir / kept}" in msg and f"model.weights={run_dir / kept}" in msg
    assert not (run_dir / "model_final.pth").exists()
    # no NaN checkpoint is what resume would continue from: the named one is the newest with finite weights
    finite = [Path(p).name for p in checkpoint_files(str(run_dir)) if has_finite_weights(p)]
    assert finite and kept == finite[0]
    # ... and it is intact: it loads into the run's model (weights_only), every weight finite
    run = Run.open(str(run_dir), kept, "cpu")
    model = build_model(run.d2cfg)
    SafeCheckpointer(model).load(run.d2cfg.MODEL.WEIGHTS)
    saved = torch.load(run_dir / kept, map_location="cpu", weights_only=True)
    assert saved["iteration"] < int(msg.split("at iteration ")[1].split()[0])
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all() if value.is_floating_point() else True, name
        assert torch.equal(value, saved["model"][name]), name


def test_eval_tool_reproduces_training_eval(tiny_run, tmp_path):
    run_dir, results = tiny_run
    again = evaluate_run(str(run_dir), "model_final.pth", output=str(tmp_path), device="cpu", plots=False).results
    for task in ("bbox", "segm"):
        assert _same(again[task]["AP"], results[task]["AP"]), task
    assert (tmp_path / "results.json").exists()


def test_predict_writes_overlays_and_skips_corrupt(tiny_run, demo_root, tmp_path):
    run_dir, _ = tiny_run
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((demo_root / "images").glob("*.jpg"))[:2]:
        shutil.copy(p, src / p.name)
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    summary = predict_source(str(run_dir), str(src), str(tmp_path / "out"), device="cpu", progress=False)
    assert summary.images == 2 and [Path(p).name for p, _ in summary.skipped] == ["broken.jpg"]
    assert all(p.stat().st_size > 0 for p in (tmp_path / "out").rglob("*.*"))
