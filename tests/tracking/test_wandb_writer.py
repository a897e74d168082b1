"""The W&B EventWriter with real wandb in offline mode (files in tmp_path), read back from the run's files."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from PIL import Image

from helpers.wandb_offline import find_offline_runs, iter_records, read_history
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.tracking import wandb_mode, wandb_writer
from maskseg_d2.tracking.wandb_writer import (RUN_ID_FILE, WandbWriter, init_wandb_run, run_name_from_overrides,
                                              scrub_secrets)


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return tmp_path / "wb"


def _prediction(record, h, w):
    """A perfect 'prediction': the first GT instance's box and a filled box mask, plus a low-score one."""
    x, y, bw, bh = record["annotations"][0]["bbox"]  # XYWH_ABS in the demo records
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.tensor([[x, y, x + bw, y + bh], [0, 0, 5, 5]], dtype=torch.float32))
    inst.scores = torch.tensor([0.9, 0.1])
    inst.pred_classes = torch.tensor([record["annotations"][0]["category_id"], 0])
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, int(y):int(y + bh), int(x):int(x + bw)] = True
    inst.pred_masks = masks
    return inst


def test_writer_logs_scalars_table_and_images(offline_env, compose_cfg, demo_root, capsys, monkeypatch):
    cfg = compose_cfg("experiment=demo", f"dataset.root={demo_root}", "logger=wandb", "device=cpu",
                      "+logger.api_key=SECRET-DO-NOT-LOG")
    info = register_dataset(cfg.dataset)
    d2 = build_d2_cfg(cfg, info, cfg.paths.output_dir)
    monkeypatch.setattr(wandb_writer, "_hint_printed", False)  # printed once per process
    run = init_wandb_run(cfg, d2, cfg.paths.output_dir)
    assert "wandb sync" in capsys.readouterr().out  # the offline hint
    writer = WandbWriter(run, info.val_name, info.thing_classes)
    record = next(r for r in DatasetCatalog.get(info.val_name) if r["annotations"])
    try:
        with EventStorage(19) as storage:
            storage.put_scalars(total_loss=1.5, loss_mask=0.5)
            storage.put_scalar("lr", 0.02, smoothing_hint=False)
            storage.put_scalars(**{"segm/AP": 42.0, "segm/AP-car": 40.0, "segm/AP-sign board": 44.0,
                                   "bbox/AP-car": 30.0, "bbox/AP-sign board": 35.0}, smoothing_hint=False)
            writer.write()
            meta = {k: record[k] for k in ("file_name", "image_id", "height", "width")}
            writer.log_predictions(19, [(meta, _prediction(record, record["height"], record["width"]))])
    finally:
        writer.finish()
    (wb,) = find_offline_runs(str(offline_env))
    history = read_history(wb)
    scalars = next(row for row in history if "segm/AP" in row)
    assert scalars["iteration"] == 19 and scalars["segm/AP"] == 42.0 and scalars["total_loss"] == 1.5
    assert scalars["lr"] == 0.02
    table_row = next(row for row in history if "eval/per_class_AP/path" in row)
    table = json.loads(Path(wb, "files", table_row["eval/per_class_AP/path"]).read_text())
    assert table["columns"] == ["class", "bbox AP", "segm AP"]
    assert table["data"] == [["car", 30.0, 40.0], ["sign board", 35.0, 44.0]]

    images = next(row for row in history if "val/predictions/filenames" in row)
    assert images["iteration"] == 19 and images["val/predictions/count"] == 1
    masks = images["val/predictions/all_masks"][0]
    pred = np.array(Image.open(Path(wb, "files", masks["predictions"]["path"])))
    gt = np.array(Image.open(Path(wb, "files", masks["ground_truth"]["path"])))
    cls = record["annotations"][0]["category_id"] + 1  # 0 is background
    assert set(np.unique(pred)) == {0, cls}  # the 0.1-score prediction is below the threshold
    assert cls in set(np.unique(gt))
    boxes = json.loads(Path(wb, "files", images["val/predictions/all_boxes"][0]["predictions"]["path"]).read_text())
    assert [b["class_id"] for b in boxes["box_data"]] == [cls]
    assert boxes["box_data"][0]["scores"]["score"] == pytest.approx(0.9)

    config = {}
    for rec in iter_records(wb):
        if rec.WhichOneof("record_type") == "config":
            config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
    labels = config["_wandb"]["mask/class_labels"]["val/predictions_wandb_delimeter_ground_truth"]["value"]
    assert labels == {"0": "background", "1": "car", "2": "sign board"}
    assert config["solver"]["base_lr"] == 0.02 and config["detectron2"]["MODEL"]["RESNETS"]["DEPTH"] == 18
    assert "api_key" not in config["logger"]  # never written into the run's config
    assert not any(b"SECRET-DO-NOT-LOG" in p.read_bytes() for p in Path(wb).rglob("*") if p.is_file())


def test_run_name_and_scrub():
    assert run_name_from_overrides(["experiment=demo", "solver.base_lr=0.01", "model=r50_fpn_3x",
                                    "hydra.run.dir=x", "dataset.root=/d"], "fallback") == \
        "solver.base_lr=0.01,model=r50_fpn_3x"
    assert run_name_from_overrides(["experiment=demo"], "2026_demo") == "2026_demo"
    assert scrub_secrets({"a": 1, "wandb_api_key": "k", "n": [{"token": 1, "b": 2}]}) == {"a": 1, "n": [{"b": 2}]}


def test_mode_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode()[0] == "offline" and "wandb sync" in wandb_mode()[1]
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode()[0] == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == ("disabled", "WANDB_MODE is set")  # WANDB_MODE wins


def test_resume_continues_the_same_wandb_run(offline_env, compose_cfg, demo_root):
    cfg = compose_cfg("experiment=demo", f"dataset.root={demo_root}", "logger=wandb", "device=cpu")
    d2 = build_d2_cfg(cfg, register_dataset(cfg.dataset), cfg.paths.output_dir)
    ids = []
    for resume in (False, True, False):  # first run, resumed run, a fresh start in the same dir
        cfg.resume = resume
        run = init_wandb_run(cfg, d2, cfg.paths.output_dir)
        ids.append(run.id)
        run.finish()
        assert (Path(cfg.paths.output_dir) / RUN_ID_FILE).read_text() == run.id
    assert ids[1] == ids[0] and ids[2] != ids[0]
    offline_dirs = [Path(d).name for d in find_offline_runs(str(offline_env))]
    assert sum(ids[0] in d for d in offline_dirs) == 2, offline_dirs  # `wandb sync` merges both into one run
