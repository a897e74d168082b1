"""Export a trained run to TorchScript or ONNX and check the exported model against the eager one.

``python tools/export.py run=<run dir> format=torchscript|onnx`` calls ``export(cfg)``, which calls
:func:`export_run`:

1. the run's model is built on CPU and wrapped in Detectron2's ``TracingAdapter``, which turns
   ``model.inference([{"image": tensor}], do_postprocess=False)`` into a function of one tensor;
2. it is traced with ``torch.jit.trace`` (``model.ts``) or exported with ``torch.onnx.export``
   (``model.onnx``, the TorchScript-based exporter, ``dynamo=False``: ``torch.export`` cannot capture
   Detectron2 0.6's data-dependent control flow, "Could not guard on data-dependent expression");
3. the file is loaded back (:func:`load_exported`) and both models predict the same sample images;
   instances are matched and compared (:func:`compare_detections`: box IoU, score difference, mask
   probability difference; the pasted masks' IoU is printed), the table is printed and saved.

The exported graph maps a ``(3, h, w)`` uint8 image, already resized to the test size, in the run's
``INPUT.FORMAT`` (BGR for model-zoo configs), to four outputs (:data:`OUTPUT_NAMES`): ``boxes`` (N, 4)
XYXY in that resized image, ``scores`` (N,), ``classes`` (N,) int64 and ``masks`` (N, 1, M, M) mask
probabilities inside each box. The score threshold, NMS and the per-image cap are inside the graph.
:class:`ExportedModel` does the resizing and pastes the masks at full resolution as
:class:`maskseg_d2.predict.BatchPredictor` does (same resize, same paste; it keeps empty masks). The run's
classes and the test size travel inside the file (TorchScript extra file / ONNX metadata ``maskseg``), so the
file alone is enough to predict.

Tracing needs no compiled Detectron2 op (the registry copy's stub ``detectron2._C`` is never called):
NMS and RoIAlign come from torchvision, so ``import torchvision`` before ``torch.jit.load`` elsewhere.
The traced graph holds CPU constants: run it on CPU.

Modules: :mod:`.tracing` (the traced graph, TorchScript / ONNX files), :mod:`.runtime` (:class:`ExportedModel`,
:class:`EagerModel`, :class:`ExportedPredictor`), :mod:`.comparison` (eager vs exported, :class:`Tolerances`),
:mod:`.exporter` (:func:`export_run`, ``export(cfg)``) and :mod:`.backends` (:func:`open_predictor`: what
``tools/predict.py backend=onnx|torchscript|auto`` runs; it lives here, a layer above ``predict``, because it
exports).
"""
from .backends import exported_model, open_predictor
from .comparison import Tolerances, compare_detections, compare_models, format_comparison
from .exporter import FORMATS, ExportResult, export, export_run, sample_images
from .runtime import EagerModel, ExportedModel, ExportedPredictor, load_exported
from .tracing import OUTPUT_NAMES, tracing_adapter

__all__ = [
    "FORMATS", "OUTPUT_NAMES", "Tolerances", "ExportResult", "ExportedModel", "EagerModel", "tracing_adapter",
    "export_run", "export", "load_exported", "compare_detections", "compare_models", "format_comparison",
    "sample_images", "ExportedPredictor", "open_predictor", "exported_model",
]
