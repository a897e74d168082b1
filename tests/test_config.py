"""The Hydra -> Detectron2 bridge: model-zoo base, groups, raw keys, derived keys."""
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torchvision

from maskseg_d2.config import build_d2_cfg, flatten_d2_keys
from maskseg_d2.errors import UserError

DATA = SimpleNamespace(train_name="x_train", val_name="x_val", thing_classes=["car", "sign board", "bike"],
                       mask_format="bitmask", num_train=10)
CONFIGS = Path(__file__).parents[1] / "configs"


def test_demo_experiment_builds_cpu_scratch_model(compose_cfg):
    cfg = compose_cfg("experiment=demo", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, cfg.paths.output_dir)
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == 3  # from the dataset's classes, never typed
    assert d2.MODEL.RESNETS.DEPTH == 18 and d2.MODEL.RESNETS.NORM == "BN"
    assert d2.MODEL.BACKBONE.FREEZE_AT == 0 and d2.MODEL.WEIGHTS == ""
    assert d2.MODEL.FPN.OUT_CHANNELS == 64 and d2.MODEL.ROI_MASK_HEAD.CONV_DIM == 64  # r18_fpn_scratch's heads
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


def test_raw_d2_keys_need_no_plus(compose_cfg):
    # d2 and model.d2 are open nodes (maskseg_d2/config_store.py): any Detectron2 key, no leading +
    cfg = compose_cfg("d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=128", "model.d2.MODEL.FPN.NORM=GN",
                      "model.d2.MODEL.RESNETS.DEPTH=34", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, "o")
    assert d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 128 and d2.MODEL.FPN.NORM == "GN"
    assert d2.MODEL.RESNETS.DEPTH == 34 and d2.MODEL.FPN.OUT_CHANNELS == 64  # the model's own keys stay
    with pytest.raises(Exception, match="Could not override 'solver.not_a_key'"):
        compose_cfg("solver.not_a_key=1")  # the rest of the config stays closed: typos are caught


def _stems(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("override", [f"{g}={n}" for g in ("model", "experiment", "debug", "augment", "logger")
                                      for n in _stems(g)])
def test_every_config_composes_and_builds(compose_cfg, override):
    """Glob smoke test: each model/experiment/debug/augment/logger file composes and maps onto Detectron2."""
    cfg = compose_cfg(override, "device=cpu")
    group, name = override.split("=")
    if group == "experiment":
        assert cfg.task_name == name and cfg.dataset.name
    d2 = build_d2_cfg(cfg, DATA, "o")
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == 3 and d2.SOLVER.MAX_ITER > 0 and d2.is_frozen()


def test_epochs_become_iterations_and_win_over_max_iter(compose_cfg, caplog):
    cfg = compose_cfg("solver.epochs=3", "solver.ims_per_batch=4", "solver.max_iter=999", "solver.warmup_iters=100",
                      "device=cpu")
    with caplog.at_level(logging.INFO, logger="maskseg_d2.config"):
        d2 = build_d2_cfg(cfg, DATA, "o")
    assert d2.SOLVER.MAX_ITER == 8  # ceil(3 epochs * 10 images / 4 per iteration)
    assert d2.SOLVER.STEPS == (5, 7) and d2.SOLVER.WARMUP_ITERS == 8  # fractions of the converted schedule
    assert "solver.epochs=3 with 10 training images at 4 images/iter -> MAX_ITER=8" in caplog.text
    assert build_d2_cfg(compose_cfg("solver.max_iter=50", "device=cpu"), DATA, "o").SOLVER.MAX_ITER == 50


def test_solver_and_augment_groups_map_to_detectron2(compose_cfg):
    cfg = compose_cfg("augment=strong", "solver.clip_gradients.enabled=true", "solver.clip_gradients.type=norm",
                      "solver.early_stopping.patience=3", "solver.best.metric=bbox/AP50", "solver.eval_period=50",
                      "solver.val_loss=false", "device=cpu")
    d2 = build_d2_cfg(cfg, DATA, "o")
    assert d2.SOLVER.AMP.ENABLED is False  # mixed precision only on CUDA
    assert (d2.SOLVER.CLIP_GRADIENTS.ENABLED, d2.SOLVER.CLIP_GRADIENTS.CLIP_TYPE) == (True, "norm")
    assert (d2.MASKSEG.BEST_METRIC, d2.MASKSEG.EARLY_STOPPING_PATIENCE, d2.TEST.EVAL_PERIOD) == ("bbox/AP50", 3, 50)
    assert d2.MASKSEG.VAL_LOSS is False
    assert d2.INPUT.CROP.ENABLED and tuple(d2.INPUT.CROP.SIZE) == (0.7, 0.7)
    assert d2.MASKSEG.AUGMENT.BRIGHTNESS == (0.75, 1.25) and d2.MASKSEG.AUGMENT.JPEG_QUALITY == (40, 95)
    assert d2.SOLVER.MOMENTUM == 0.9 and d2.SOLVER.WEIGHT_DECAY == 5e-4
    default = build_d2_cfg(compose_cfg("device=cpu"), DATA, "o")
    assert default.MASKSEG.BEST_METRIC == "segm/AP" and default.MASKSEG.AUGMENT.BRIGHTNESS == ()
    assert default.MASKSEG.VAL_LOSS is True


def test_r18_fpn_uses_torchvision_imagenet_weights(compose_cfg):
    d2 = build_d2_cfg(compose_cfg("model=r18_fpn", "device=cpu"), DATA, "o")
    assert d2.MODEL.WEIGHTS == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url  # the real URL
    assert (d2.MODEL.RESNETS.DEPTH, d2.MODEL.RESNETS.NORM, d2.INPUT.FORMAT) == (18, "FrozenBN", "RGB")
    assert d2.MODEL.PIXEL_STD == [58.395, 57.12, 57.375]  # torchvision's normalisation, not MSRA's
    with pytest.raises(UserError, match="model=r18_fpn: has no model-zoo COCO weights"):
        build_d2_cfg(compose_cfg("model=r18_fpn", "model.weights=zoo", "device=cpu"), DATA, "o")
    with pytest.raises(UserError, match="model=r18_fpn_scratch: has no ImageNet weights"):
        build_d2_cfg(compose_cfg("model=r18_fpn_scratch", "model.weights=imagenet", "device=cpu"), DATA, "o")


@pytest.mark.parametrize("override, needle", [
    ("augment.brightness=[1.2,0.8]", "augment.brightness=[1.2, 0.8]: give [min, max]"),
    ("solver.best.mode=up", "solver.best.mode=up: use max"),
])
def test_bad_group_values_are_one_line(compose_cfg, override, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        build_d2_cfg(compose_cfg(override, "device=cpu"), DATA, "o")
