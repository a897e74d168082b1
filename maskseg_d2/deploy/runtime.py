"""The two models that predict a BGR image the same way: an exported file (:class:`ExportedModel`) and the
run's eager model (:class:`EagerModel`, the reference it is checked against).
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Sequence

import numpy as np

import torch
import torchvision  # noqa: F401  (registers the nms / roi_align ops that a loaded TorchScript graph calls)
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from .. import compat
from ..engine.run import Run
from ..errors import UserError
from ..predict import BatchPredictor, Detections
from .tracing import META_KEY, OUTPUT_NAMES, raw_outputs, require_onnx

__all__ = ["MASK_THRESHOLD", "EagerModel", "ExportedModel", "ExportedPredictor", "load_exported"]

MASK_THRESHOLD = 0.5  # Detectron2's paste threshold (detector_postprocess default)


def _resize(bgr: np.ndarray, meta: dict) -> torch.Tensor:
    img = bgr[:, :, ::-1] if meta["input_format"] == "RGB" else bgr
    aug = T.ResizeShortestEdge([meta["min_size_test"]] * 2, meta["max_size_test"])
    resized = aug.get_transform(img).apply_image(img)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def _to_detections(outputs: Sequence[Any], input_hw: tuple[int, int], output_hw: tuple[int, int],
                   score_threshold: float = 0.0, max_detections: int | None = None,
                   keep: torch.Tensor | None = None) -> tuple[Detections, np.ndarray]:
    """The four raw outputs -> full-size :class:`Detections` (boxes rescaled, masks pasted).

    The graph already applied its own threshold and cap; a higher ``score_threshold`` and a lower
    ``max_detections`` select what the eager model keeps with them (NMS never lets a lower score remove a
    higher one), and ``keep`` (class indices) drops other classes before their masks are pasted.

    Returns:
        tuple: the detections (highest score first) and their (N, M, M) float32 mask probabilities
        inside the boxes, in the same order.
    """
    boxes, scores, classes, masks = (o if torch.is_tensor(o) else torch.as_tensor(np.asarray(o)) for o in outputs)
    inst = Instances(input_hw, pred_boxes=Boxes(boxes.float()), scores=scores.float(),
                     pred_classes=classes.long(), pred_masks=masks.float())
    inst.roi_mask_probs = masks.float().flatten(1)  # an Instances field: filtered and ordered with the rest
    if score_threshold > 0:
        inst = inst[inst.scores >= score_threshold]
    if max_detections is not None and len(inst) > max_detections:
        inst = inst[torch.argsort(-inst.scores, stable=True)[:max_detections]]
    if keep is not None and len(inst):
        inst = inst[torch.isin(inst.pred_classes, keep)]
    inst = detector_postprocess(inst, *output_hw, mask_threshold=MASK_THRESHOLD)
    inst = inst[torch.argsort(-inst.scores, stable=True)]  # Detections.from_instances keeps this order
    probs = inst.roi_mask_probs.reshape(len(inst), *masks.shape[-2:]).numpy()
    return Detections.from_instances(inst), probs


class EagerModel:
    """A run's model in eager PyTorch, with the same pre/post-processing as :class:`ExportedModel`.

    Args:
        run_dir (str): a run directory.
        checkpoint (str or None): see :meth:`maskseg_d2.engine.run.Run.open`.
        score_threshold (float): ``ROI_HEADS.SCORE_THRESH_TEST``.
        max_detections (int): ``TEST.DETECTIONS_PER_IMAGE``.
    """

    def __init__(self, run_dir: str, checkpoint: str | None = None, score_threshold: float = 0.05,
                 max_detections: int = 100) -> None:
        self.run = Run.open(run_dir, checkpoint, "cpu", score_threshold=score_threshold, max_detections=max_detections)
        self.model = BatchPredictor(self.run.d2cfg).model  # the predictor's own weight loading
        cfg = self.run.d2cfg
        self.meta = {
            "format_version": 1, "thing_classes": list(self.run.thing_classes), "input_format": cfg.INPUT.FORMAT,
            "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST), "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
            "score_threshold": float(score_threshold), "max_detections": int(max_detections),
            "mask_threshold": MASK_THRESHOLD, "outputs": list(OUTPUT_NAMES), "run": self.run.name,
            "checkpoint": os.path.basename(cfg.MODEL.WEIGHTS), "torch": torch.__version__,
            "detectron2_source": compat.detectron2_source(), "compiled_ops": compat.has_compiled_ops(),
        }

    def preprocess(self, bgr: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> (3, h, w) uint8 tensor at the test size, in the model's input format."""
        return _resize(bgr, self.meta)

    def raw(self, image: torch.Tensor) -> tuple:
        """Run the model on a preprocessed image; the four outputs of :data:`OUTPUT_NAMES`."""
        with torch.inference_mode():
            return raw_outputs(self.model, [{"image": image}])

    def detect(self, bgr: np.ndarray) -> tuple[Detections, np.ndarray]:
        """Predict one (H, W, 3) uint8 BGR image: full-size detections and their in-box mask probabilities."""
        image = self.preprocess(bgr)
        with torch.inference_mode():
            return _to_detections(self.raw(image), tuple(image.shape[1:]), bgr.shape[:2])

    def __call__(self, bgr: np.ndarray) -> Detections:
        """Predict one (H, W, 3) uint8 BGR image; :class:`Detections` at full resolution."""
        return self.detect(bgr)[0]


class ExportedModel:
    """An exported file (``model.ts`` or ``model.onnx``) ready to predict BGR images.

    Args:
        path (str): the file written by :func:`export_run`.
        score_threshold (float or None): keep detections at or above this; None: the export's threshold
            (lower values have no effect: the graph already dropped them).
        threads (int or None): CPU threads for ONNX Runtime (None: its default).

    Attributes:
        meta (dict): what :func:`export_run` stored (``thing_classes``, test size, thresholds, ...).
        format (str): ``torchscript`` or ``onnx``.
    """

    def __init__(self, path: str, score_threshold: float | None = None, threads: int | None = None) -> None:
        if not os.path.isfile(path):
            raise UserError(f"{path}: not found — export a run first: python tools/export.py run=<run dir>")
        self.path = path
        self.format = "onnx" if path.endswith(".onnx") else "torchscript"
        if self.format == "onnx":
            require_onnx()
            import onnxruntime as ort  # optional (see require_onnx)

            opts = ort.SessionOptions()
            # idle threads sleep instead of spinning: predict_source decodes, draws and encodes in threads beside it
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads:
                opts.intra_op_num_threads = int(threads)
            self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            raw = self._session.get_modelmeta().custom_metadata_map.get(META_KEY)
        else:
            extra = {META_KEY: ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load: deprecated in torch 2.x, works
                self._module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
            raw = extra[META_KEY]
        if not raw:
            raise UserError(f"{path}: no maskseg metadata inside — export it with tools/export.py")
        self.meta = json.loads(raw)
        self.score_threshold = float(self.meta["score_threshold"] if score_threshold is None else score_threshold)

    @property
    def thing_classes(self) -> list[str]:
        """list[str]: class names; index = predicted class."""
        return list(self.meta["thing_classes"])

    def preprocess(self, bgr: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> the graph's input: (3, h, w) uint8 at the test size."""
        return _resize(bgr, self.meta)

    def raw(self, image: torch.Tensor) -> tuple:
        """Run the graph on a preprocessed image; the four outputs of :data:`OUTPUT_NAMES`."""
        if self.format == "onnx":
            return tuple(self._session.run(list(OUTPUT_NAMES), {"image": image.numpy()}))
        with torch.inference_mode():
            return tuple(self._module(image))

    def detect(self, bgr: np.ndarray) -> tuple[Detections, np.ndarray]:
        """Predict one (H, W, 3) uint8 BGR image: full-size detections and their in-box mask probabilities."""
        image = self.preprocess(bgr)
        threshold = self.score_threshold if self.score_threshold > self.meta["score_threshold"] else 0.0
        with torch.inference_mode():
            return _to_detections(self.raw(image), tuple(image.shape[1:]), bgr.shape[:2], threshold)

    def __call__(self, bgr: np.ndarray) -> Detections:
        """Predict one (H, W, 3) uint8 BGR image; :class:`Detections` at full resolution."""
        return self.detect(bgr)[0]


def load_exported(path: str, score_threshold: float | None = None, threads: int | None = None) -> ExportedModel:
    """Load ``model.ts`` / ``model.onnx`` written by :func:`export_run` (see :class:`ExportedModel`)."""
    return ExportedModel(path, score_threshold, threads)


class ExportedPredictor:
    """:class:`maskseg_d2.predict.BatchPredictor`'s interface over an exported file: ``predict_source`` runs it
    with the same reader threads, batches, outputs and video loop; only the model call differs.

    Same results as the eager predictor at the same settings: the same resize, the threshold and cap applied to
    the graph's outputs (see :func:`_to_detections`), the same mask paste, highest score first, and instances
    whose pasted mask is empty dropped (counted in :attr:`empty_masks`). The graph takes one image: a batch
    runs image by image, each call using ONNX Runtime's (or torch's) threads.

    Args:
        model (ExportedModel): the loaded file.
        score_threshold (float): keep detections at or above this (not below the export's own threshold).
        max_detections (int): instances per image at most (not above the export's own cap).
        keep_classes (list[int] or None): class indices to keep; None keeps all.
    """

    def __init__(self, model: ExportedModel, score_threshold: float, max_detections: int,
                 keep_classes: list[int] | None = None) -> None:
        meta = model.meta
        if score_threshold < meta["score_threshold"] or max_detections > meta["max_detections"]:
            raise ValueError(f"{model.path} was exported with score_threshold={meta['score_threshold']}, "
                             f"max_detections={meta['max_detections']}: it cannot predict at "
                             f"{score_threshold} / {max_detections} — export it again")
        self.model = model
        self.backend = model.format
        self.score_threshold = float(score_threshold) if score_threshold > meta["score_threshold"] else 0.0
        self.max_detections = int(max_detections)
        self.keep = None if keep_classes is None else torch.as_tensor(sorted(keep_classes), dtype=torch.int64)
        self.empty_masks = 0

    def preprocess(self, bgr: np.ndarray) -> dict:
        """The graph's input for one image (thread-safe): ``image``, and the original ``height``/``width``."""
        return {"image": self.model.preprocess(bgr), "height": bgr.shape[0], "width": bgr.shape[1]}

    def detections(self, raw: Sequence[Any], inp: dict) -> Detections:
        """The graph's outputs for ``inp`` -> its :class:`Detections` (thresholds, classes, masks pasted)."""
        with torch.inference_mode():
            dets, _ = _to_detections(raw, tuple(inp["image"].shape[1:]), (inp["height"], inp["width"]),
                                     self.score_threshold, self.max_detections, self.keep)
        filled = dets.masks.any(axis=(1, 2))  # as BatchPredictor: an empty mask has no outline
        self.empty_masks += int((~filled).sum())
        return dets if filled.all() else dets.select(filled)

    def __call__(self, inputs: list[dict]) -> list[Detections]:
        """Predict a batch from :meth:`preprocess`; one :class:`Detections` per input, at the original size."""
        return [self.detections(self.model.raw(inp["image"]), inp) for inp in inputs]
