"""Export a trained run to TorchScript or ONNX and check the exported model against the eager one.

``python tools/export.py run=<run dir> format=torchscript|onnx`` calls :func:`export_run`:

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
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import json
import os
import sys
import time
import types
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

import detectron2
import torch
import torchvision  # noqa: F401  (registers the nms / roi_align ops that a loaded TorchScript graph calls)
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from tabulate import tabulate

from . import compat
from .engine.run import Run
from .errors import UserError
from .predict import BatchPredictor, Detections, list_images, read_bgr

__all__ = [
    "FORMATS", "OUTPUT_NAMES", "Tolerances", "ExportResult", "ExportedModel", "EagerModel", "tracing_adapter",
    "export_run", "export", "load_exported", "compare_detections", "compare_models", "format_comparison",
]

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
OUTPUT_NAMES = ("boxes", "scores", "classes", "masks")
META_KEY = "maskseg"
MASK_THRESHOLD = 0.5  # Detectron2's paste threshold (detector_postprocess default)


# ------------------------------------------------------------------------------------------- tracing


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


def _raw_outputs(model, inputs: list[dict]) -> tuple[torch.Tensor, ...]:
    """The traced function: one image in, the four tensors of :data:`OUTPUT_NAMES` out (masks not pasted)."""
    inst = model.inference(inputs, do_postprocess=False)[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_classes, inst.pred_masks


def _adapter(model, image: torch.Tensor) -> torch.nn.Module:
    # eval(): torch.onnx.export restores the wrapper's mode recursively, and a fresh Module is in training mode
    return tracing_adapter()(model, [{"image": image}], _raw_outputs).eval()


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


def _save_torchscript(model, image: torch.Tensor, path: str, meta: dict) -> None:
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(_adapter(model, image), (image,), check_trace=False)
        torch.jit.save(traced, path, _extra_files={META_KEY: json.dumps(meta)})


def _require_onnx() -> None:
    try:  # optional: onnx and onnxruntime (requirements-dev.txt), needed for format=onnx only
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise UserError(f"format=onnx needs the onnx and onnxruntime packages ({e.name} is missing) — "
                        "pip install -r requirements-dev.txt, or use format=torchscript") from None


def _save_onnx(model, image: torch.Tensor, path: str, meta: dict, opset: int) -> None:
    import onnx  # optional (see _require_onnx)

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


# ------------------------------------------------------------------------------------------- models


def _resize(bgr: np.ndarray, meta: dict) -> torch.Tensor:
    img = bgr[:, :, ::-1] if meta["input_format"] == "RGB" else bgr
    aug = T.ResizeShortestEdge([meta["min_size_test"]] * 2, meta["max_size_test"])
    resized = aug.get_transform(img).apply_image(img)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def _to_detections(outputs: Sequence[Any], input_hw: tuple[int, int], output_hw: tuple[int, int],
                   score_threshold: float = 0.0) -> tuple[Detections, np.ndarray]:
    """The four raw outputs -> full-size :class:`Detections` (boxes rescaled, masks pasted).

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
            return _raw_outputs(self.model, [{"image": image}])

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
            _require_onnx()
            import onnxruntime as ort  # optional (see _require_onnx)

            opts = ort.SessionOptions()
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


# ------------------------------------------------------------------------------------------- comparison


@dataclass
class Tolerances:
    """What "the exported model predicts the same" means, per matched instance.

    The masks are checked on the network's mask probabilities, not on the IoU of the pasted binary masks
    (printed too): where a probability sits at the 0.5 threshold, as everywhere in an untrained mask head,
    a 1e-7 difference flips pixels, so a mask IoU bound would judge the threshold, not the export.

    Attributes:
        box_iou (float): minimum box IoU.
        score (float): maximum absolute score difference.
        mask_prob (float): maximum absolute difference of the in-box mask probabilities.
    """

    box_iou: float = 0.99
    score: float = 1e-3
    mask_prob: float = 1e-3


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)  # two empty boxes: identical


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_detections(ref: Detections, other: Detections, min_iou: float = 0.5,
                       ref_probs: np.ndarray | None = None, other_probs: np.ndarray | None = None) -> dict[str, Any]:
    """Match two predictions of one image and measure how far apart they are.

    Greedy matching in ``ref``'s score order: each instance takes the unmatched ``other`` instance of the
    same class with the highest box IoU (at least ``min_iou``). Index order is not trusted: two near-equal
    scores may swap places between back ends.

    Args:
        ref (Detections): the reference (eager) prediction.
        other (Detections): the prediction to check.
        min_iou (float): box IoU below which two instances are not a match.
        ref_probs, other_probs (np.ndarray or None): (N, M, M) in-box mask probabilities of each side
            (``detect()`` of the models), for ``max_mask_prob_diff``.

    Returns:
        dict: ``ref``, ``other`` (instance counts), ``matched``, ``min_box_iou``, ``min_mask_iou``,
        ``max_mask_prob_diff``, ``max_score_diff``, ``max_box_diff_px`` (None when nothing matched).
    """
    ious = _box_iou(ref.boxes.astype(np.float64), other.boxes.astype(np.float64))
    used, pairs = set(), []
    for i in np.argsort(-ref.scores, kind="stable"):
        cand = [j for j in np.argsort(-ious[i], kind="stable")
                if j not in used and other.classes[j] == ref.classes[i] and ious[i, j] >= min_iou]
        if cand:
            used.add(cand[0])
            pairs.append((int(i), int(cand[0])))
    row: dict[str, Any] = {"ref": len(ref), "other": len(other), "matched": len(pairs), "min_box_iou": None,
                           "min_mask_iou": None, "max_mask_prob_diff": None, "max_score_diff": None,
                           "max_box_diff_px": None}
    if pairs:
        row.update(
            min_box_iou=min(float(ious[i, j]) for i, j in pairs),
            min_mask_iou=min(_mask_iou(ref.masks[i], other.masks[j]) for i, j in pairs),
            max_score_diff=max(abs(float(ref.scores[i]) - float(other.scores[j])) for i, j in pairs),
            max_box_diff_px=max(float(np.abs(ref.boxes[i] - other.boxes[j]).max()) for i, j in pairs),
        )
        if ref_probs is not None and other_probs is not None:
            row["max_mask_prob_diff"] = max(float(np.abs(ref_probs[i] - other_probs[j]).max()) for i, j in pairs)
    return row


def _within(row: dict, tol: Tolerances) -> bool:
    if not (row["ref"] == row["other"] == row["matched"]):
        return False
    if row["matched"] == 0:
        return True
    masks_ok = row["max_mask_prob_diff"] is None or row["max_mask_prob_diff"] <= tol.mask_prob
    return row["min_box_iou"] >= tol.box_iou and row["max_score_diff"] <= tol.score and masks_ok


def compare_models(eager: EagerModel, exported: ExportedModel, images: Sequence[str],
                   tolerances: Tolerances | None = None) -> list[dict[str, Any]]:
    """Predict ``images`` with both models; one :func:`compare_detections` row per image (+ ``image``, ``ok``)."""
    tol = tolerances or Tolerances()
    rows = []
    for path in images:
        bgr = read_bgr(path)
        (ref, ref_probs), (other, other_probs) = eager.detect(bgr), exported.detect(bgr)
        row = {"image": os.path.basename(path), **compare_detections(ref, other, 0.5, ref_probs, other_probs)}
        row["ok"] = _within(row, tol)
        rows.append(row)
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_comparison(rows: Sequence[dict], tolerances: Tolerances | None = None) -> str:
    """Markdown table of :func:`compare_models` rows, with the tolerances in the header line.

    Args:
        rows (list[dict]): comparison rows.
        tolerances (Tolerances or None): printed above the table.

    Returns:
        str: the table.
    """
    tol = tolerances or Tolerances()
    body = [[r["image"], r["ref"], r["other"], r["matched"], _fmt(r["min_box_iou"], ".4f"),
             _fmt(r["min_mask_iou"], ".4f"), _fmt(r.get("max_mask_prob_diff"), ".1e"),
             _fmt(r["max_score_diff"], ".1e"), "ok" if r["ok"] else "DIFFERS"] for r in rows]
    head = ["image", "eager", "exported", "matched", "min box IoU", "min mask IoU", "max mask prob diff",
            "max score diff", "result"]
    text = tabulate(body, headers=head, tablefmt="github", disable_numparse=True)
    return (f"tolerances: same instance count, box IoU >= {tol.box_iou}, score diff <= {tol.score:g}, "
            f"mask probability diff <= {tol.mask_prob:g}\n{text}")


# ------------------------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """What :func:`export_run` produced.

    Attributes:
        path (str): the exported model file.
        format (str): ``torchscript`` or ``onnx``.
        rows (list[dict]): per-image comparison with the eager model.
        tolerances (Tolerances): the bounds the rows were checked against.
        seconds (float): time spent tracing/exporting.
        report (str): the JSON report written beside the model.
    """

    path: str
    format: str
    rows: list[dict]
    tolerances: Tolerances = field(default_factory=Tolerances)
    seconds: float = 0.0
    report: str = ""

    @property
    def ok(self) -> bool:
        """bool: every compared image within the tolerances."""
        return all(r["ok"] for r in self.rows)

    def message(self) -> str:
        """str: the console report."""
        verdict = ("the exported model matches the eager one" if self.ok else
                   "the exported model DIFFERS from the eager one on some images (see the table)")
        return (f"exported {self.format} in {self.seconds:.1f} s -> {self.path}\n"
                f"{format_comparison(self.rows, self.tolerances)}\n{verdict} ({len(self.rows)} image(s)); "
                f"report: {self.report}")


def sample_images(run_dir: str, images: str | None, num_images: int) -> list[str]:
    """Images to trace and compare on: ``images`` (file/folder/glob), else the run's validation images.

    Args:
        run_dir (str): the run.
        images (str or None): where the images are; None: the run's validation split (its dataset must be
            on disk).
        num_images (int): how many (the first ones).

    Returns:
        list[str]: image paths, at least one.
    """
    if images:
        paths = list_images(str(images))
    else:
        try:
            run = Run.open(run_dir, device="cpu")
            records = DatasetCatalog.get(run.split_name("val")) or DatasetCatalog.get(run.split_name("train"))
        except UserError as e:
            raise UserError(f"{e} — or pass sample images with images=<folder | glob>") from None
        paths = [r["file_name"] for r in records]
    if not paths:
        raise UserError(f"images={images}: no images found — pass images=<folder | glob | file>")
    return paths[: max(int(num_images), 1)]


def export_run(
    run_dir: str,
    fmt: str = "torchscript",
    output: str | None = None,
    checkpoint: str | None = None,
    images: str | None = None,
    num_images: int = 4,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    opset: int = 17,
    tolerances: Tolerances | None = None,
) -> ExportResult:
    """Trace a run's model on CPU, save it, load it back and compare it with the eager model.

    Args:
        run_dir (str): a directory written by ``tools/train.py``.
        fmt (str): ``torchscript`` (``model.ts``) or ``onnx`` (``model.onnx``).
        output (str or None): output folder; None: ``<run_dir>/export``.
        checkpoint (str or None): None: ``model_best.pth``, else ``model_final.pth``, else the last.
        images (str or None): sample images (file, folder, glob); None: the run's validation images.
        num_images (int): how many sample images are compared (the first is traced).
        score_threshold (float): detections below are dropped inside the graph; higher thresholds can be
            applied when loading (:class:`ExportedModel`).
        max_detections (int): instances per image at most (inside the graph).
        opset (int): ONNX opset.
        tolerances (Tolerances or None): bounds of the comparison; None: the defaults.

    Returns:
        ExportResult: the file, the comparison rows; the report is also written to
        ``<output>/export_<fmt>.json``.
    """
    if fmt not in FORMATS:
        raise UserError(f"format={fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    tol = tolerances or Tolerances()
    eager = EagerModel(run_dir, checkpoint, score_threshold, max_detections)
    paths = sample_images(run_dir, images, num_images)
    output = output or os.path.join(run_dir, "export")
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, FILE_NAMES[fmt])
    meta = {**eager.meta, "traced_on": os.path.basename(paths[0])}
    example = eager.preprocess(read_bgr(paths[0]))
    start = time.perf_counter()
    if fmt == "torchscript":
        _save_torchscript(eager.model, example, path, meta)
    else:
        _save_onnx(eager.model, example, path, meta, opset)
    seconds = time.perf_counter() - start
    rows = compare_models(eager, load_exported(path), paths, tol)
    report = os.path.join(output, f"export_{fmt}.json")
    result = ExportResult(path, fmt, rows, tol, seconds, report)
    with open(report, "w", encoding="utf-8") as f:
        json.dump({"file": os.path.basename(path), "format": fmt, "seconds": round(seconds, 2), "ok": result.ok,
                   "tolerances": asdict(tol), "meta": meta, "comparison": rows}, f, indent=2)
    return result


def export(cfg: Any) -> ExportResult:
    """:func:`export_run` with the options of ``configs/export.yaml`` (what ``tools/export.py`` runs)."""
    if not cfg.get("run"):
        raise UserError("run= is required — python tools/export.py run=<run dir> format=torchscript|onnx")
    tol = cfg.tolerance
    return export_run(
        str(cfg.run), str(cfg.format), str(cfg.output) if cfg.output else None,
        str(cfg.checkpoint) if cfg.checkpoint else None, str(cfg.images) if cfg.images else None,
        int(cfg.num_images), float(cfg.score_threshold), int(cfg.max_detections), int(cfg.opset),
        Tolerances(float(tol.box_iou), float(tol.score), float(tol.mask_prob)),
    )
