"""debug=overfit: train and evaluate on the same first N training images (the subset; a model trained on it:
tests/engine/test_learning.py)."""
from detectron2.data import DatasetCatalog, MetadataCatalog

from maskseg_d2.data import register_dataset
from maskseg_d2.engine.train import overfit_subset


def test_overfit_subset_is_train_and_val(compose_cfg, demo_root):
    cfg = compose_cfg("debug=overfit", f"dataset.root={demo_root}", "device=cpu")
    assert cfg.overfit_images == 8 and cfg.augment.flip == "none" and cfg.logger.name == "none"
    info = register_dataset(cfg.dataset)
    sub = overfit_subset(info, 3)
    assert sub.train_name == sub.val_name == "demo_overfit" and sub.num_train == sub.num_val == 3
    records = DatasetCatalog.get("demo_overfit")
    assert [r["file_name"] for r in records] == [r["file_name"] for r in DatasetCatalog.get(info.train_name)[:3]]
    assert MetadataCatalog.get("demo_overfit").thing_classes == ["car", "sign board"]
    assert overfit_subset(info, 3).num_train == 3  # registering again (multirun) replaces it
