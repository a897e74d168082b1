"""A trained run's model, called on batches of images (the fast path of ``tools/predict.py``).

Unlike :func:`maskseg_d2.engine.run.load_run`, opening a run for prediction does not load its dataset:
the class names come from ``run_info.json``, so a run directory copied to another machine predicts
without the training data.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import transforms as T
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess

from ..config import resolve_device
from ..engine.checkpoint import SafeCheckpointer
from ..errors import UserError
from .detections import Detections

__all__ = ["PredictRun", "open_run", "BatchPredictor", "fold_batchnorm"]

logger = logging.getLogger(__name__)


@dataclass
class PredictRun:
    """What prediction needs from a run directory.

    Attributes:
        run_dir (str): the run directory.
        d2cfg (CfgNode): its Detectron2 config (weights, device, thresholds set), frozen.
        thing_classes (list[str]): class names; index = predicted class.
    """

    run_dir: str
    d2cfg: CfgNode
    thing_classes: list[str]

    @property
    def name(self) -> str:
        """str: the run directory's name (used as the Label Studio ``model_version``)."""
        return os.path.basename(os.path.normpath(self.run_dir))


def _run_classes(run_dir: str) -> list[str]:
    info = os.path.join(run_dir, "run_info.json")
    if os.path.isfile(info):
        with open(info, encoding="utf-8") as f:
            classes = json.load(f).get("dataset", {}).get("thing_classes")
        if classes:
            return [str(c) for c in classes]
    resolved = os.path.join(run_dir, "config_resolved.yaml")
    if os.path.isfile(resolved):
        from omegaconf import OmegaConf

        classes = OmegaConf.load(resolved).get("dataset", {}).get("classes")
        if classes:
            return [str(c) for c in classes]
    raise UserError(f"{run_dir}: neither run_info.json nor config_resolved.yaml names the classes — "
                    "pass a run dir written by tools/train.py")


def open_run(run_dir: str, checkpoint: str | None = None, device: str = "auto",
             score_threshold: float = 0.5, max_detections: int = 100) -> PredictRun:
    """Read a run directory's Detectron2 config and classes, and point the model at ``checkpoint``.

    Args:
        run_dir (str): a directory written by ``tools/train.py``.
        checkpoint (str or None): file name inside the run dir, or a path; None: ``model_best.pth``,
            else ``model_final.pth``, else the last checkpoint (as ``tools/eval.py``).
        device (str): auto | cpu | cuda[:N].
        score_threshold (float): ``ROI_HEADS.SCORE_THRESH_TEST``: detections below are dropped.
        max_detections (int): ``TEST.DETECTIONS_PER_IMAGE``.

    Returns:
        PredictRun: the config and the class names.
    """
    if not run_dir or not os.path.isdir(run_dir):
        raise UserError(f"run={run_dir}: not a directory — pass a run dir printed by tools/train.py "
                        f"(e.g. run=outputs/demo/runs/<time>_demo_r18_fpn_scratch)")
    from ..engine.evaluate import resolve_checkpoint

    checkpoint = resolve_checkpoint(run_dir, checkpoint)
    d2_yaml = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(d2_yaml):
        raise UserError(f"{d2_yaml}: missing — {run_dir} is not a complete maskseg-d2 run dir")
    weights = checkpoint if os.path.isfile(checkpoint) else os.path.join(run_dir, checkpoint)
    if not os.path.isfile(weights):
        have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth"))
        raise UserError(f"{weights}: checkpoint not found — available in {run_dir}: "
                        f"{', '.join(have) or 'none'} (was training interrupted? pass checkpoint=<file>)")
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise UserError(f"score_threshold={score_threshold}: must be in [0, 1] (e.g. 0.5)")
    if int(max_detections) < 1:
        raise UserError(f"max_detections={max_detections}: must be >= 1 (e.g. 100)")
    d2cfg = get_cfg()
    d2cfg.set_new_allowed(True)  # tolerate keys added by a newer/older maskseg-d2
    d2cfg.merge_from_file(d2_yaml)
    d2cfg.MODEL.WEIGHTS = weights
    d2cfg.MODEL.DEVICE = resolve_device(device)
    d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
    d2cfg.TEST.DETECTIONS_PER_IMAGE = int(max_detections)
    d2cfg.freeze()
    classes = _run_classes(run_dir)
    if len(classes) != d2cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise UserError(f"{run_dir}: run_info.json lists {len(classes)} classes but the model has "
                        f"{d2cfg.MODEL.ROI_HEADS.NUM_CLASSES} — the run dir mixes files of two runs")
    return PredictRun(run_dir, d2cfg, classes)


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold each inference-mode BatchNorm into the convolution before it (same outputs, fewer ops).

    Detectron2's ``Conv2d`` applies its ``norm`` after the convolution; with fixed statistics that is an
    affine map per channel, which this merges into the convolution's weight and bias.

    Args:
        model (nn.Module): a model in ``eval()`` mode, modified in place.

    Returns:
        int: the number of folded layers.
    """
    folded = 0
    for conv in model.modules():
        bn = getattr(conv, "norm", None) if isinstance(conv, Conv2d) else None
        if not isinstance(bn, (torch.nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)):
            continue
        if getattr(bn, "running_mean", None) is None or bn.training:
            continue
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = torch.nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        conv.norm = None
        folded += 1
    return folded


class BatchPredictor:
    """Detectron2's ``DefaultPredictor`` for lists of images.

    Same preprocessing (``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, ``INPUT.FORMAT``) and the
    same outputs, but the model runs on a batch under ``torch.inference_mode`` (and autocast fp16 on CUDA
    when ``amp``), BatchNorm is folded into the convolutions, convolutions run channels-last on CPU, and
    :meth:`preprocess` is separate so reader threads can resize while the model works.

    Args:
        d2cfg (CfgNode): a config from :func:`open_run` (``MODEL.WEIGHTS`` set).
        amp (bool): mixed precision on CUDA (ignored on CPU).
        keep_classes (list[int] or None): class indices to keep (others are dropped before their
            masks are pasted); None keeps all.
    """

    def __init__(self, d2cfg: CfgNode, amp: bool = False, keep_classes: list[int] | None = None) -> None:
        self.cfg = d2cfg.clone()
        self.model = build_model(self.cfg).eval()
        SafeCheckpointer(self.model).load(self.cfg.MODEL.WEIGHTS)  # weights_only: no pickled code runs
        fold_batchnorm(self.model)
        if self.cfg.MODEL.DEVICE == "cpu":  # oneDNN convolutions run ~30% faster on NHWC tensors
            self.model.to(memory_format=torch.channels_last)
        self.aug = T.ResizeShortestEdge([self.cfg.INPUT.MIN_SIZE_TEST] * 2, self.cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = self.cfg.INPUT.FORMAT
        self.device = torch.device(self.cfg.MODEL.DEVICE)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.keep = None if keep_classes is None else torch.as_tensor(sorted(keep_classes), dtype=torch.int64)
        self.empty_masks = 0  # instances dropped because their mask had no pixel above 0.5

    def preprocess(self, bgr: np.ndarray) -> dict:
        """The model input of one image (thread-safe).

        Args:
            bgr (np.ndarray): (H, W, 3) uint8 BGR.

        Returns:
            dict: ``image`` (3, h, w) uint8 tensor at the test size, ``height``/``width`` of the original.
        """
        img = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        resized = self.aug.get_transform(img).apply_image(img)
        # uint8 until the model normalises it: 4x less to copy to the GPU than float32
        tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": bgr.shape[0], "width": bgr.shape[1]}

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _infer(self, inputs: list[dict]) -> list:
        try:
            with self._autocast():
                return self.model.inference(inputs, do_postprocess=False)
        except RuntimeError as e:
            if not self.amp:
                raise
            # an op without fp16 support in this Detectron2 build: fp32 from here on, same results
            logger.warning("fp16 (AMP) inference failed (%s); continuing in fp32 — pass amp=false", e)
            self.amp = False
            return self.model.inference(inputs, do_postprocess=False)

    def __call__(self, inputs: list[dict]) -> list[Detections]:
        """Run the model on a batch.

        Args:
            inputs (list[dict]): from :meth:`preprocess`.

        Returns:
            list[Detections]: one per input, masks at the original resolution, highest score first;
            instances with an empty mask are dropped (counted in :attr:`empty_masks`).
        """
        if not inputs:
            return []
        with torch.inference_mode():
            raw = self._infer(inputs)
            out = []
            for inst, inp in zip(raw, inputs):
                if self.keep is not None and len(inst):
                    inst = inst[torch.isin(inst.pred_classes, self.keep.to(inst.pred_classes.device))]
                inst = detector_postprocess(inst, inp["height"], inp["width"])
                dets = Detections.from_instances(inst)
                # an empty mask has no outline, cut-out or polygon: dropped so every output agrees
                filled = dets.masks.any(axis=(1, 2))
                self.empty_masks += int((~filled).sum())
                out.append(dets if filled.all() else dets.select(filled))
        return out
