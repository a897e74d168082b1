"""A trained run's model, called on batches of images (the fast path of ``tools/predict.py``).

The run is opened by :meth:`maskseg_d2.engine.run.Run.open`, which reads no dataset: a run directory copied
to another machine predicts without the training data.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np

import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess

from ..engine.checkpoint import SafeCheckpointer
from .detections import Detections

__all__ = ["BatchPredictor", "fold_batchnorm"]

logger = logging.getLogger(__name__)


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
        d2cfg (CfgNode): a run's config, :attr:`maskseg_d2.engine.run.Run.d2cfg` (``MODEL.WEIGHTS`` set).
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
        self.backend = "eager"

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
