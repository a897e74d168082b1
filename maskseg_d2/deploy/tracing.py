"""Tracing a run's model into a function of one image tensor, saved as TorchScript (``model.ts``) or ONNX
(``model.onnx``) with the run's metadata inside (see :mod:`maskseg_d2.deploy` for the graph's inputs and outputs).
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import json
import os
import sys
import types
import warnings
from typing import Iterator

import detectron2
import torch

from ..errors import UserError

__all__ = ["OUTPUT_NAMES", "META_KEY", "tracing_adapter", "raw_outputs", "save_torchscript", "save_onnx",
           "require_onnx"]

OUTPUT_NAMES = ("boxes", "scores", "classes", "masks")
META_KEY = "maskseg"


def tracing_adapter() -> type:
    """Detectron2's ``TracingAdapter`` class, importable without Caffe2.

    Detectron2 0.6's ``detectron2/export/__init__.py`` imports its Caffe2 exporter first, and ``caffe2``
    is not shipped with today's PyTorch; ``TracingAdapter`` (``export/flatten.py``) does not need it.
    When the package import fails on ``caffe2``, ``detectron2.export`` is registered without its
    ``__init__`` so that ``detectron2.export.flatten`` loads; the Caffe2 names stay unavailable.

    Returns:
        type: ``detectron2.export.flatten.TracingAdapter``.
    """
    try:  # lazy: this import is what fails without caffe2
        from detectron2.export import TracingAdapter

        return TracingAdapter
    except ModuleNotFoundError as e:
        if "caffe2" not in str(e):
            raise
    path = os.path.join(os.path.dirname(detectron2.__file__), "export")
    spec = importlib.machinery.ModuleSpec("detectron2.export", None, is_package=True)
    spec.submodule_search_locations = [path]
    pkg = types.ModuleType("detectron2.export", "detectron2.export without its Caffe2 exporter (no caffe2 module)")
    pkg.__spec__, pkg.__path__ = spec, [path]

    def _missing(name: str):
        raise AttributeError(f"detectron2.export.{name} is unavailable: Detectron2 0.6's Caffe2 exporter "
                             "needs the caffe2 module (not shipped with today's PyTorch); use TracingAdapter")

    pkg.__getattr__ = _missing
    sys.modules["detectron2.export"] = pkg
    detectron2.export = pkg
    from detectron2.export import flatten, torchscript  # lazy: loads through the package registered above

    # the names the real __init__ exports besides the Caffe2 API
    pkg.TracingAdapter = flatten.TracingAdapter
    pkg.scripting_with_instances = torchscript.scripting_with_instances
    pkg.dump_torchscript_IR = torchscript.dump_torchscript_IR
    return flatten.TracingAdapter


def raw_outputs(model, inputs: list[dict]) -> tuple[torch.Tensor, ...]:
    """The traced function: one image in, the four tensors of :data:`OUTPUT_NAMES` out (masks not pasted)."""
    inst = model.inference(inputs, do_postprocess=False)[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_classes, inst.pred_masks


def _adapter(model, image: torch.Tensor) -> torch.nn.Module:
    # eval(): torch.onnx.export restores the wrapper's mode recursively, and a fresh Module is in training mode
    return tracing_adapter()(model, [{"image": image}], raw_outputs).eval()


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    with warnings.catch_warnings():
        # Detectron2 0.6 is written to trace correctly despite these (shape arithmetic is patched); the round
        # trip comparison is the real check.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.(jit|onnx)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # "aten::index ... negative indices": Detectron2's indices come from nonzero/topk, never negative
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        yield


def save_torchscript(model, image: torch.Tensor, path: str, meta: dict) -> None:
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(_adapter(model, image), (image,), check_trace=False)
        torch.jit.save(traced, path, _extra_files={META_KEY: json.dumps(meta)})


def require_onnx() -> None:
    try:  # optional: onnx and onnxruntime (requirements-dev.txt), needed for format=onnx only
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise UserError(f"format=onnx needs the onnx and onnxruntime packages ({e.name} is missing) — "
                        "pip install -r requirements-dev.txt, or use format=torchscript") from None


def save_onnx(model, image: torch.Tensor, path: str, meta: dict, opset: int) -> None:
    import onnx  # optional (see require_onnx)

    per_instance = {name: {0: "instances"} for name in OUTPUT_NAMES}
    try:
        with _quiet_tracing():
            torch.onnx.export(
                _adapter(model, image), (image,), path, dynamo=False, opset_version=int(opset),
                input_names=["image"], output_names=list(OUTPUT_NAMES),
                dynamic_axes={"image": {1: "height", 2: "width"}, **per_instance},
            )
    except Exception as e:  # an operator without ONNX symbolic: say which, keep torchscript as the way out
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RuntimeError(f"torch.onnx.export failed for this model (torch {torch.__version__}, opset {opset}): "
                           f"{first} — use format=torchscript") from e
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, path)
