"""The one bridge from the Hydra config (``configs/``) to Detectron2's CfgNode.

Order follows Detectron2's ``tools/train_net.py:setup``: ``get_cfg()`` -> ``add_maskseg_config()`` ->
``model.config_file`` (a model-zoo name or the path of any Detectron2 YAML) -> our groups (weights, solver,
augment) -> raw ``d2`` keys (model's, then top-level) ->
what is derived from the data (``NUM_CLASSES``, dataset names, mask format, epochs -> MAX_ITER) ->
``OUTPUT_DIR`` = Hydra's run dir -> ``freeze()``.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml
from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg
from omegaconf import DictConfig, OmegaConf

from .errors import UserError

__all__ = ["build_d2_cfg", "add_maskseg_config", "resolve_weights", "resolve_device", "flatten_d2_keys",
           "epochs_to_iters", "config_file_path", "load_base_config", "departs_from_base", "flatten_tree"]

logger = logging.getLogger(__name__)

# Keys that come from the data or the run, never typed by hand (they would go out of sync).
_DERIVED_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "DATASETS.TRAIN", "DATASETS.TEST", "OUTPUT_DIR")
# Keys resolved from a Hydra key after the raw merge (a raw value would be overwritten): key -> the Hydra key to set.
_RESOLVED_KEYS = {"MASKSEG.CPU_BF16": "solver.cpu_amp"}
# The recipe a fine-tune may depart from: run_info.json lists these sections' differences from the base config
# (INPUT.MASK_FORMAT follows the data, not a choice).
_RECIPE_SECTIONS = ("SOLVER", "INPUT")
_FROM_DATA = ("INPUT.MASK_FORMAT",)


def add_maskseg_config(cfg: CfgNode) -> None:
    """Add the ``MASKSEG`` node: what our Trainer does beyond DefaultTrainer (Detectron2's add_X_config idiom).

    Keeping these in the CfgNode means the run's ``config.yaml`` records them and ``Trainer.build_*``
    classmethods (which only get the CfgNode) can read them.
    """
    cfg.MASKSEG = CfgNode()
    aug = cfg.MASKSEG.AUGMENT = CfgNode()
    aug.BRIGHTNESS = ()       # (min, max) intensity factor; () = off
    aug.CONTRAST = ()
    aug.SATURATION = ()
    aug.JPEG_QUALITY = ()     # (min, max) JPEG quality in [1, 100]; () = off
    aug.JPEG_PROB = 0.5
    aug.FLIP_PROB = 0.5       # share of images flipped along INPUT.RANDOM_FLIP
    cfg.MASKSEG.BEST_METRIC = "segm/AP"  # model_best.pth tracks it
    cfg.MASKSEG.BEST_MODE = "max"
    cfg.MASKSEG.EARLY_STOPPING_PATIENCE = 0  # evaluations without improvement before stopping; 0 = off
    cfg.MASKSEG.EARLY_STOPPING_MIN_DELTA = 0.0
    cfg.MASKSEG.VAL_LOSS = True  # validation loss at each periodic evaluation (TEST.EVAL_PERIOD > 0)
    cfg.MASKSEG.CPU_BF16 = False  # CPU training step under bf16 autocast, channels-last weights (solver.cpu_amp)


def flatten_d2_keys(tree: Mapping[str, Any] | None, prefix: str = "") -> list:
    """``{"MODEL": {"FPN": {"OUT_CHANNELS": 128}}}`` -> ``["MODEL.FPN.OUT_CHANNELS", 128]`` (merge_from_list form)."""
    return [item for pair in flatten_tree(tree or {}, prefix).items() for item in pair]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={device} but no CUDA GPU is visible to torch — use device=cpu or device=auto")
    return device


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (Intel AMX tiles or AVX512-BF16), where oneDNN's bf16 convolutions
    beat fp32; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private but stable since torch 2.1
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_cpu_amp(value: Any, device: str) -> bool:
    """``solver.cpu_amp``: true | false | auto (bf16 only where :func:`native_cpu_bf16`); always off on CUDA."""
    text = str(value).lower()
    if text not in ("true", "false", "auto"):
        raise UserError(f"solver.cpu_amp={value}: use auto (bf16 where the CPU has bf16 units), true or false")
    if not device.startswith("cpu"):
        return False
    return text == "true" or (text == "auto" and native_cpu_bf16())


def _model_url(model_cfg: Mapping[str, Any], key: str, kind: str) -> str | None:
    """``zoo_weights`` / ``imagenet_weights`` of a model yaml: absent -> derive from config_file; null -> none."""
    if key not in model_cfg:
        return ""  # derive
    value = model_cfg[key]
    if value is None:
        raise UserError(f"model={model_cfg.get('name')}: has no {kind} weights — use model.weights=scratch, "
                        f"a local file, or another model (configs/model/)")
    return str(value)


def config_file_path(config_file: str) -> str:
    """The Detectron2 YAML that ``model.config_file`` names: an existing file, else a model-zoo config name.

    A local file wins over a zoo name so that a copy edited under the same relative path is the one used.

    Args:
        config_file (str): a path (relative to the working directory) or e.g.
            ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml``.

    Returns:
        str: the absolute path of the YAML file.
    """
    if os.path.isfile(config_file):
        return os.path.abspath(config_file)
    try:
        return model_zoo.get_config_file(config_file)
    except RuntimeError:
        raise UserError(f"model.config_file={config_file}: no such file, nor a model-zoo config — give the path of "
                        "a Detectron2 yaml or a name from detectron2/model_zoo/configs (e.g. "
                        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml)") from None


def load_base_config(config_file: str) -> CfgNode:
    """``get_cfg()`` + the ``MASKSEG`` node + ``model.config_file`` merged, its ``_BASE_`` chain resolved by
    Detectron2's own ``merge_from_file`` (relative to each file, as ``tools/train_net.py`` does).

    Returns:
        CfgNode: not frozen; the recipe the file declares, before our groups change it.
    """
    path = config_file_path(config_file)
    d2 = get_cfg()
    add_maskseg_config(d2)
    try:
        d2.merge_from_file(path)
    except (KeyError, AssertionError, ValueError, OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot load it as a Detectron2 config ({e}) — model.config_file must be a "
                        "Detectron2 yaml whose keys exist in detectron2/config/defaults.py (its _BASE_ relative to "
                        "the file)") from None
    return d2


def flatten_tree(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"SOLVER": {"BASE_LR": 0.02}}`` -> ``{"SOLVER.BASE_LR": 0.02}``; lists and tuples are values (as lists)."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten_tree(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(node) if isinstance(node, (list, tuple)) else node}


def departs_from_base(d2cfg: CfgNode, config_file: str, sections: tuple[str, ...] = _RECIPE_SECTIONS) -> dict:
    """The ``SOLVER``/``INPUT`` values of the run's config that differ from the base config file's own.

    A fine-tune that changes the zoo recipe (learning rate, schedule, image sizes) says so in ``run_info.json``.

    Args:
        d2cfg (CfgNode): the run's final config (:func:`build_d2_cfg`).
        config_file (str): ``model.config_file``.
        sections (tuple[str]): top-level nodes compared.

    Returns:
        dict: ``{"SOLVER.BASE_LR": [base value, run value], ...}``, sorted by key.
    """
    base = load_base_config(config_file)
    old = {k: v for s in sections for k, v in flatten_tree(base[s], f"{s}.").items()}
    new = {k: v for s in sections for k, v in flatten_tree(d2cfg[s], f"{s}.").items()}
    return {k: [old.get(k), new[k]] for k in sorted(new) if old.get(k) != new[k] and k not in _FROM_DATA}


def resolve_weights(model_cfg: Mapping[str, Any]) -> str:
    """Map ``model.weights`` (zoo | imagenet | scratch | path) to a MODEL.WEIGHTS value.

    ``zoo`` and ``imagenet`` keep the real download URLs (fetched and cached by iopath on first use). A model
    yaml may name them (``zoo_weights``, ``imagenet_weights``; null = not available for that model);
    otherwise ``zoo`` is the model zoo's checkpoint for ``config_file`` and ``imagenet`` the file's own
    ``MODEL.WEIGHTS`` (Detectron2's configs name the ImageNet backbone there).
    """
    weights = str(model_cfg["weights"])
    config_file = str(model_cfg["config_file"])
    if weights == "zoo":
        url = _model_url(model_cfg, "zoo_weights", "model-zoo COCO")
        if url:
            return url
        try:
            return model_zoo.get_checkpoint_url(config_file)
        except RuntimeError:
            raise UserError(f"model.weights=zoo: {config_file} is not a model-zoo config, so it has no zoo "
                            "checkpoint — use model.weights=imagenet (the file's MODEL.WEIGHTS), scratch, or a "
                            ".pth/.pkl path") from None
    if weights == "imagenet":
        return _model_url(model_cfg, "imagenet_weights", "ImageNet") or load_base_config(config_file).MODEL.WEIGHTS
    if weights == "scratch":
        return ""
    if "://" not in weights and not Path(weights).is_file():
        raise UserError(
            f"model.weights={weights}: file not found — give an existing .pth/.pkl file, "
            "or one of zoo, imagenet, scratch"
        )
    return weights


def epochs_to_iters(epochs: float, num_images: int, ims_per_batch: int) -> int:
    """``ceil(epochs * num_images / ims_per_batch)``, at least 1 (Detectron2 counts iterations, not epochs)."""
    if num_images <= 0:
        raise UserError("solver.epochs is set but the training split is empty — add images or use solver.max_iter")
    return max(1, math.ceil(float(epochs) * num_images / ims_per_batch))


def _apply_scratch(d2: CfgNode) -> None:
    # FrozenBN on random weights never learns its statistics: train norms and all stages instead.
    if d2.MODEL.RESNETS.NORM == "FrozenBN":
        d2.MODEL.RESNETS.NORM = "BN"
    d2.MODEL.BACKBONE.FREEZE_AT = 0


def _max_iter(s: DictConfig, num_train: int | None) -> int:
    if s.get("epochs") is None:
        return int(s.max_iter)
    if num_train is None:
        raise UserError("solver.epochs needs the dataset size — use solver.max_iter instead")
    max_iter = epochs_to_iters(s.epochs, num_train, int(s.ims_per_batch))
    logger.info("solver.epochs=%s with %d training images at %d images/iter -> MAX_ITER=%d (%.1f iters/epoch; "
                "solver.max_iter=%s ignored)", s.epochs, num_train, int(s.ims_per_batch), max_iter,
                num_train / int(s.ims_per_batch), s.max_iter)
    return max_iter


# _apply_solver and _apply_augment have the same shape (one Hydra key -> one Detectron2 key, typed) and stay two:
# each maps its own group, and a table-driven version would hide the casts and defaults a reader checks here.
def _apply_solver(d2: CfgNode, s: DictConfig, num_train: int | None) -> None:
    max_iter = _max_iter(s, num_train)
    d2.SOLVER.IMS_PER_BATCH = int(s.ims_per_batch)
    d2.SOLVER.BASE_LR = float(s.base_lr)
    d2.SOLVER.MOMENTUM = float(s.momentum)
    d2.SOLVER.WEIGHT_DECAY = float(s.weight_decay)
    d2.SOLVER.MAX_ITER = max_iter
    d2.SOLVER.WARMUP_ITERS = min(int(s.warmup_iters), max_iter)
    d2.SOLVER.STEPS = tuple(sorted({int(f * max_iter) for f in s.steps if 0 < int(f * max_iter) < max_iter}))
    d2.SOLVER.GAMMA = float(s.gamma)
    d2.SOLVER.CHECKPOINT_PERIOD = int(s.checkpoint_period)
    d2.TEST.EVAL_PERIOD = int(s.eval_period)
    clip = s.get("clip_gradients") or {}
    d2.SOLVER.CLIP_GRADIENTS.ENABLED = bool(clip.get("enabled", False))
    d2.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = str(clip.get("type", "value"))
    d2.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = float(clip.get("value", 1.0))
    d2.SOLVER.CLIP_GRADIENTS.NORM_TYPE = float(clip.get("norm_type", 2.0))
    d2.SOLVER.AMP.ENABLED = bool(s.get("amp", False))  # only on CUDA: see build_d2_cfg
    best, stop = s.get("best") or {}, s.get("early_stopping") or {}
    d2.MASKSEG.BEST_METRIC = str(best.get("metric", "segm/AP"))
    d2.MASKSEG.BEST_MODE = str(best.get("mode", "max"))
    if d2.MASKSEG.BEST_MODE not in ("max", "min"):
        raise UserError(f"solver.best.mode={d2.MASKSEG.BEST_MODE}: use max (AP) or min (a loss)")
    d2.MASKSEG.EARLY_STOPPING_PATIENCE = int(stop.get("patience", 0))
    d2.MASKSEG.EARLY_STOPPING_MIN_DELTA = float(stop.get("min_delta", 0.0))
    d2.MASKSEG.VAL_LOSS = bool(s.get("val_loss", True))


def _pair(value: Any, key: str) -> tuple:
    if value is None:
        return ()
    value = tuple(float(v) for v in value)
    if len(value) != 2 or value[0] > value[1]:
        raise UserError(f"augment.{key}={list(value)}: give [min, max] (or null to switch it off)")
    return value


def _apply_augment(d2: CfgNode, a: DictConfig) -> None:
    d2.INPUT.MIN_SIZE_TRAIN = tuple(int(x) for x in a.min_size_train)
    d2.INPUT.MIN_SIZE_TRAIN_SAMPLING = str(a.get("min_size_train_sampling", "choice"))
    d2.INPUT.MAX_SIZE_TRAIN = int(a.max_size_train)
    d2.INPUT.MIN_SIZE_TEST = int(a.min_size_test)
    d2.INPUT.MAX_SIZE_TEST = int(a.max_size_test)
    d2.INPUT.RANDOM_FLIP = str(a.flip)
    crop = a.get("crop") or {}
    d2.INPUT.CROP.ENABLED = bool(crop.get("enabled", False))
    d2.INPUT.CROP.TYPE = str(crop.get("type", "relative_range"))
    d2.INPUT.CROP.SIZE = [float(x) for x in crop.get("size", [0.9, 0.9])]
    aug = d2.MASKSEG.AUGMENT
    aug.BRIGHTNESS = _pair(a.get("brightness"), "brightness")
    aug.CONTRAST = _pair(a.get("contrast"), "contrast")
    aug.SATURATION = _pair(a.get("saturation"), "saturation")
    aug.JPEG_QUALITY = tuple(int(q) for q in _pair(a.get("jpeg_quality"), "jpeg_quality"))
    aug.JPEG_PROB = float(a.get("jpeg_prob", 0.5))
    aug.FLIP_PROB = float(a.get("flip_prob", 0.5))
    if not 0.0 <= aug.FLIP_PROB <= 1.0:
        raise UserError(f"augment.flip_prob={aug.FLIP_PROB:g}: must be in [0, 1] (0.5 flips half the images)")


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def _merge_raw(d2: CfgNode, tree: Mapping[str, Any] | None, where: str) -> None:
    pairs = flatten_d2_keys(tree)
    for key in pairs[::2]:
        if key in _DERIVED_KEYS:
            raise UserError(f"{where}.{key} is derived from the dataset/run and cannot be set — remove it")
        if key in _RESOLVED_KEYS:
            raise UserError(f"{where}.{key} is set from {_RESOLVED_KEYS[key]} — remove it and set "
                            f"{_RESOLVED_KEYS[key]}=true|false|auto")
    try:
        d2.merge_from_list(pairs)
    except (KeyError, AssertionError, ValueError) as e:
        raise UserError(
            f"{where}: {e} — check the Detectron2 key name and value type (detectron2/config/defaults.py)")


def build_d2_cfg(cfg: DictConfig, dataset: Any, output_dir: str) -> CfgNode:
    """Build the frozen Detectron2 config for one run.

    Args:
        cfg (DictConfig): the composed Hydra config (``configs/train.yaml``).
        dataset (DatasetInfo): what :func:`maskseg_d2.data.register_dataset` returned; gives the dataset
            names, ``thing_classes`` (-> NUM_CLASSES), the mask format and ``num_train`` (-> epochs).
        output_dir (str): the run directory (Hydra's ``runtime.output_dir``).

    Returns:
        CfgNode: frozen.
    """
    d2 = load_base_config(str(cfg.model.config_file))
    d2.MODEL.WEIGHTS = resolve_weights(cfg.model)
    if cfg.model.weights == "scratch":
        _apply_scratch(d2)
    _apply_solver(d2, cfg.solver, getattr(dataset, "num_train", None))
    _apply_augment(d2, cfg.augment)
    # Loader workers compete with the model for cores: keep two cores for the main process.
    d2.DATALOADER.NUM_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 2))
    _merge_raw(d2, _plain(cfg.model.get("d2")), "model.d2")
    _merge_raw(d2, _plain(cfg.get("d2")), "d2")

    d2.MODEL.ROI_HEADS.NUM_CLASSES = len(dataset.thing_classes)
    d2.DATASETS.TRAIN = (dataset.train_name,)
    d2.DATASETS.TEST = (dataset.val_name,)
    d2.INPUT.MASK_FORMAT = dataset.mask_format
    d2.MODEL.DEVICE = resolve_device(str(cfg.device))
    # Detectron2's AMPTrainer (fp16) needs CUDA; CPU mixed precision is ours, bf16 via solver.cpu_amp.
    d2.SOLVER.AMP.ENABLED = bool(d2.SOLVER.AMP.ENABLED) and d2.MODEL.DEVICE.startswith("cuda")
    d2.MASKSEG.CPU_BF16 = resolve_cpu_amp(cfg.solver.get("cpu_amp", False), d2.MODEL.DEVICE)
    d2.SEED = int(cfg.seed)
    d2.OUTPUT_DIR = str(output_dir)
    d2.freeze()
    return d2
