"""The one bridge from the Hydra config (``configs/``) to Detectron2's CfgNode.

Order follows Detectron2's ``tools/train_net.py:setup``: ``get_cfg()`` -> model-zoo YAML -> our groups
(weights, solver, augment) -> raw ``d2`` keys (model's, then top-level) -> what is derived from the data
(``NUM_CLASSES``, dataset names, mask format) -> ``OUTPUT_DIR`` = Hydra's run dir -> ``freeze()``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from . import compat
from .errors import UserError
from .utils.paths import register_resolvers

compat.apply()
register_resolvers()

from detectron2 import model_zoo  # noqa: E402
from detectron2.config import CfgNode, get_cfg  # noqa: E402

__all__ = ["build_d2_cfg", "resolve_weights", "resolve_device", "flatten_d2_keys"]

# Keys that come from the data or the run, never typed by hand (they would go out of sync).
_DERIVED_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "DATASETS.TRAIN", "DATASETS.TEST", "OUTPUT_DIR")


def flatten_d2_keys(tree: Mapping[str, Any] | None, prefix: str = "") -> list:
    """``{"MODEL": {"FPN": {"OUT_CHANNELS": 128}}}`` -> ``["MODEL.FPN.OUT_CHANNELS", 128]`` (merge_from_list form)."""
    out: list = []
    for key, value in (tree or {}).items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += flatten_d2_keys(value, full + ".")
        else:
            out += [full, list(value) if isinstance(value, (list, tuple)) else value]
    return out


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={device} but no CUDA GPU is visible to torch — use device=cpu or device=auto")
    return device


def resolve_weights(model_cfg: Mapping[str, Any]) -> str:
    """Map ``model.weights`` (zoo | imagenet | scratch | path) to a MODEL.WEIGHTS value.

    ``zoo`` and ``imagenet`` keep Detectron2's real download URLs (fetched and cached by iopath on first use).
    """
    weights = str(model_cfg["weights"])
    zoo_config = model_cfg["zoo_config"]
    if weights == "zoo":
        return model_zoo.get_checkpoint_url(zoo_config)
    if weights == "imagenet":
        base = get_cfg()
        base.merge_from_file(model_zoo.get_config_file(zoo_config))
        return base.MODEL.WEIGHTS
    if weights == "scratch":
        return ""
    if "://" not in weights and not Path(weights).is_file():
        raise UserError(
            f"model.weights={weights}: file not found — give an existing .pth/.pkl file, or one of zoo, imagenet, scratch"
        )
    return weights


def _apply_scratch(d2: CfgNode) -> None:
    # FrozenBN on random weights never learns its statistics: train norms and all stages instead.
    if d2.MODEL.RESNETS.NORM == "FrozenBN":
        d2.MODEL.RESNETS.NORM = "BN"
    d2.MODEL.BACKBONE.FREEZE_AT = 0


def _apply_groups(d2: CfgNode, cfg: DictConfig) -> None:
    s, a = cfg.solver, cfg.augment
    d2.SOLVER.IMS_PER_BATCH = int(s.ims_per_batch)
    d2.SOLVER.BASE_LR = float(s.base_lr)
    d2.SOLVER.MOMENTUM = float(s.momentum)
    d2.SOLVER.WEIGHT_DECAY = float(s.weight_decay)
    d2.SOLVER.MAX_ITER = int(s.max_iter)
    d2.SOLVER.WARMUP_ITERS = min(int(s.warmup_iters), int(s.max_iter))
    d2.SOLVER.STEPS = tuple(sorted({int(f * s.max_iter) for f in s.steps if 0 < int(f * s.max_iter) < s.max_iter}))
    d2.SOLVER.GAMMA = float(s.gamma)
    d2.SOLVER.CHECKPOINT_PERIOD = int(s.checkpoint_period)
    d2.TEST.EVAL_PERIOD = int(s.eval_period)
    d2.INPUT.MIN_SIZE_TRAIN = tuple(int(x) for x in a.min_size_train)
    d2.INPUT.MAX_SIZE_TRAIN = int(a.max_size_train)
    d2.INPUT.MIN_SIZE_TEST = int(a.min_size_test)
    d2.INPUT.MAX_SIZE_TEST = int(a.max_size_test)
    d2.INPUT.RANDOM_FLIP = str(a.flip)


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def _merge_raw(d2: CfgNode, tree: Mapping[str, Any] | None, where: str) -> None:
    pairs = flatten_d2_keys(tree)
    for key in pairs[::2]:
        if key in _DERIVED_KEYS:
            raise UserError(f"{where}.{key} is derived from the dataset/run and cannot be set — remove it")
    try:
        d2.merge_from_list(pairs)
    except (KeyError, AssertionError, ValueError) as e:
        raise UserError(f"{where}: {e} — check the Detectron2 key name and value type (detectron2/config/defaults.py)")


def build_d2_cfg(cfg: DictConfig, dataset: Any, output_dir: str) -> CfgNode:
    """Build the frozen Detectron2 config for one run.

    Args:
        cfg (DictConfig): the composed Hydra config (``configs/config.yaml``).
        dataset (DatasetInfo): what :func:`maskseg_d2.data.register_dataset` returned; gives the dataset
            names, ``thing_classes`` (-> NUM_CLASSES) and the mask format.
        output_dir (str): the run directory (Hydra's ``runtime.output_dir``).

    Returns:
        CfgNode: frozen.
    """
    d2 = get_cfg()
    try:
        d2.merge_from_file(model_zoo.get_config_file(cfg.model.zoo_config))
    except RuntimeError as e:
        raise UserError(f"model.zoo_config={cfg.model.zoo_config}: {e} — pick a config from detectron2/model_zoo/configs")
    d2.MODEL.WEIGHTS = resolve_weights(cfg.model)
    if cfg.model.weights == "scratch":
        _apply_scratch(d2)
    _apply_groups(d2, cfg)
    # Loader workers compete with the model for cores: keep two cores for the main process.
    d2.DATALOADER.NUM_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 2))
    _merge_raw(d2, _plain(cfg.model.get("d2")), "model.d2")
    _merge_raw(d2, _plain(cfg.get("d2")), "d2")

    d2.MODEL.ROI_HEADS.NUM_CLASSES = len(dataset.thing_classes)
    d2.DATASETS.TRAIN = (dataset.train_name,)
    d2.DATASETS.TEST = (dataset.val_name,)
    d2.INPUT.MASK_FORMAT = dataset.mask_format
    d2.MODEL.DEVICE = resolve_device(str(cfg.device))
    d2.SEED = int(cfg.seed)
    d2.OUTPUT_DIR = str(output_dir)
    d2.freeze()
    return d2
