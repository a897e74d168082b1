"""The Hydra -> Detectron2 bridge: model-zoo base, groups, raw keys, derived keys."""
from types import SimpleNamespace

import pytest

from maskseg_d2.config import build_d2_cfg, flatten_d2_keys
from maskseg_d2.errors import UserError

DATA = SimpleNamespace(train_name="x_train", val_name="x_val", thing_classes=["car", "sign board", "bike"],
                       mask_format="bitmask")


def test_demo_experiment_builds_cpu_scratch_model(compose_cfg):
    cfg = compose_cfg("experiment=demo", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, cfg.paths.output_dir)
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == 3  # from the dataset's classes, never typed
    assert d2.MODEL.RESNETS.DEPTH == 18 and d2.MODEL.RESNETS.NORM == "BN"
    assert d2.MODEL.BACKBONE.FREEZE_AT == 0 and d2.MODEL.WEIGHTS == ""
    assert d2.MODEL.FPN.OUT_CHANNELS == 128
    assert d2.DATASETS.TRAIN == ("x_train",) and d2.DATASETS.TEST == ("x_val",)
    assert d2.INPUT.MASK_FORMAT == "bitmask"
    assert d2.OUTPUT_DIR == cfg.paths.output_dir
    assert d2.SOLVER.MAX_ITER == cfg.solver.max_iter
    assert d2.SOLVER.STEPS == tuple(int(f * cfg.solver.max_iter) for f in cfg.solver.steps)
    assert d2.is_frozen()


@pytest.mark.parametrize("model, depth, url_part", [
    ("r50_fpn_1x", 50, "mask_rcnn_R_50_FPN_1x/137260431"),
    ("r50_fpn_3x", 50, "mask_rcnn_R_50_FPN_3x/137849600"),
    ("r101_fpn_3x", 101, "mask_rcnn_R_101_FPN_3x/138205316"),
])
def test_zoo_models_keep_real_download_urls(compose_cfg, model, depth, url_part):
    cfg = compose_cfg(f"model={model}", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, cfg.paths.output_dir)
    assert d2.MODEL.RESNETS.DEPTH == depth
    assert url_part in d2.MODEL.WEIGHTS and d2.MODEL.WEIGHTS.startswith("https://")
    assert d2.MODEL.RESNETS.NORM == "FrozenBN"  # fine-tuning keeps the zoo's frozen BN


def test_imagenet_and_scratch_weights(compose_cfg):
    cfg = compose_cfg("model=r50_fpn_3x", "model.weights=imagenet", "device=cpu")
    assert build_d2_cfg(cfg, DATA, "o").MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    cfg = compose_cfg("model=r50_fpn_3x", "model.weights=scratch", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, "o")
    assert (d2.MODEL.WEIGHTS, d2.MODEL.RESNETS.NORM, d2.MODEL.BACKBONE.FREEZE_AT) == ("", "BN", 0)


def test_raw_d2_keys_merge_last(compose_cfg):
    cfg = compose_cfg("+d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=64", "+d2.SOLVER.CLIP_GRADIENTS.ENABLED=true",
                      "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, "o")
    assert d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 64 and d2.SOLVER.CLIP_GRADIENTS.ENABLED is True


@pytest.mark.parametrize("override, needle", [
    ("+d2.MODEL.ROI_HEADS.NUM_CLASSES=5", "derived from the dataset"),
    ("+d2.MODEL.NOT_A_KEY=1", "NOT_A_KEY"),
    ("model.weights=/nonexistent/w.pth", "file not found"),
])
def test_bad_config_is_one_line_user_error(compose_cfg, override, needle):
    with pytest.raises(UserError) as info:
        build_d2_cfg(compose_cfg(override, "device=cpu"), DATA, "o")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_flatten_d2_keys():
    assert flatten_d2_keys({"A": {"B": 1, "C": {"D": [1, 2]}}}) == ["A.B", 1, "A.C.D", [1, 2]]


def test_every_experiment_composes(compose_cfg):
    from pathlib import Path

    for exp in sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "experiment").glob("*.yaml")):
        cfg = compose_cfg(f"experiment={exp}")
        assert cfg.task_name == exp and cfg.dataset.name
