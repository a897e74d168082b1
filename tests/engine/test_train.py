"""End to end on CPU with real Detectron2: a few training iterations write every run-dir artifact;
tools/eval.py re-evaluates the run to the same numbers; predict draws masked images."""
import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(demo_root, tmp_path_factory):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from maskseg_d2.engine import train

    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(Path(__file__).parents[2] / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=demo", f"dataset.root={demo_root}", "device=cpu", "solver.max_iter=4",
            "solver.warmup_iters=2", "solver.ims_per_batch=2", "num_vis=2", "+d2.DATALOADER.NUM_WORKERS=0",
        ])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return run_dir, train(cfg)


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-6


def test_run_dir_holds_every_artifact(tiny_run):
    run_dir, results = tiny_run
    for name in ("config.yaml", "config_resolved.yaml", "run_info.json", "model_final.pth", "metrics.json",
                 "eval/results.json", "last_checkpoint"):
        assert (run_dir / name).exists(), name
    info = json.loads((run_dir / "run_info.json").read_text())
    assert len(info["dataset"]["hash"]) == 64 and info["dataset"]["thing_classes"] == ["car", "sign board"]
    assert "commit" in info["git"] and info["environment"]["detectron2"]
    saved = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(saved) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-car", "AP-sign board"} <= set(saved[task])
        assert saved[task]["AP"] is None or 0 <= saved[task]["AP"] <= 100
    metrics = [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines()]
    assert any("total_loss" in m and math.isfinite(m["total_loss"]) for m in metrics)
    assert "MODEL:" in (run_dir / "config.yaml").read_text()
    assert len(list((run_dir / "vis").glob("*.png"))) == 2


def test_eval_tool_reproduces_training_eval(tiny_run, tmp_path):
    from maskseg_d2.engine.evaluate import evaluate_run

    run_dir, results = tiny_run
    again = evaluate_run(str(run_dir), output=str(tmp_path), device="cpu")
    for task in ("bbox", "segm"):
        assert _same(again[task]["AP"], results[task]["AP"]), task
    assert (tmp_path / "results.json").exists()


def test_predict_writes_overlays_and_skips_corrupt(tiny_run, demo_root, tmp_path):
    import shutil

    from maskseg_d2.predict import predict

    run_dir, _ = tiny_run
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((demo_root / "images").glob("*.jpg"))[:2]:
        shutil.copy(p, src / p.name)
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = predict(str(run_dir), str(src), str(tmp_path / "out"), device="cpu")
    assert len(out) == 2 and all(Path(p).stat().st_size > 0 for p in out)
