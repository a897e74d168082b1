"""``tools/predict.py backend=eager|onnx|torchscript|auto``: the model that ``predict_source`` calls.

``onnx`` and ``torchscript`` run the run's exported file (``<run>/export/model.onnx`` / ``model.ts``), exported
first by :func:`export_run` (and so checked against the eager model) when it is missing, older than the
checkpoint, made from another checkpoint, or exported with a higher score threshold or a lower detection cap than
this prediction asks for. ``auto`` picks ONNX Runtime on CPU when it is installed and the export's check passed,
eager otherwise, and logs which and why in one line.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Sequence

from ..engine.run import Run
from ..errors import UserError
from ..predict import BatchPredictor, read_bgr
from .exporter import FILE_NAMES, export_run
from .runtime import ExportedPredictor, load_exported

__all__ = ["open_predictor", "exported_model"]

logger = logging.getLogger(__name__)

EXPORT_SCORE_THRESHOLD = 0.05  # Detectron2's default: one export then serves every threshold above it
EXPORT_MAX_DETECTIONS = 100
NUM_SAMPLES = 4


def _stale(path: str, report: str, checkpoint: str, score_threshold: float, max_detections: int) -> str | None:
    """Why the export at ``path`` cannot serve this prediction, or None when it can."""
    if not (os.path.isfile(path) and os.path.isfile(report)):
        return "no export yet"
    if os.path.getmtime(path) < os.path.getmtime(checkpoint):
        return "the checkpoint is newer"
    if os.path.getmtime(report) < os.path.getmtime(path):  # replaced last: an older report belongs to another file
        return "its check report is older than the file"
    with open(report, encoding="utf-8") as f:
        meta = json.load(f).get("meta", {})
    if meta.get("checkpoint") != os.path.basename(checkpoint):
        return f"exported from {meta.get('checkpoint')}"
    if meta.get("score_threshold", 1.0) > score_threshold or meta.get("max_detections", 0) < max_detections:
        return (f"exported at score_threshold={meta.get('score_threshold')}, max_detections="
                f"{meta.get('max_detections')}")
    return None


def _readable(paths: Sequence[str] | None, n: int) -> list[str] | None:
    """The first ``n`` paths that decode (a folder may hold broken files); None: none given or none readable."""
    good = []
    for path in paths or ():
        try:
            read_bgr(path)
        except Exception:  # any decoder error: predict_source reports it; the export just skips it
            continue
        good.append(path)
        if len(good) >= n:
            break
    return good or None


def exported_model(run: Run, fmt: str, samples: Sequence[str] | None = None) -> tuple[Any, bool, str]:
    """The run's exported file for this prediction's settings, exported (atomically) when it cannot serve them.

    Args:
        run (Run): the opened run (its checkpoint, score threshold and detection cap are the prediction's).
        fmt (str): ``onnx`` or ``torchscript``.
        samples (list[str] or None): images to check a new export on (the first readable ones); None: the
            run's validation images.

    Returns:
        tuple: the loaded :class:`ExportedModel`, whether its check against the eager model passed, and the
        check report's path.
    """
    cfg = run.d2cfg
    threshold, cap = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), int(cfg.TEST.DETECTIONS_PER_IMAGE)
    folder = os.path.join(run.run_dir, "export")
    path, report = os.path.join(folder, FILE_NAMES[fmt]), os.path.join(folder, f"export_{fmt}.json")
    why = _stale(path, report, cfg.MODEL.WEIGHTS, threshold, cap)
    if why:
        logger.info("exporting %s to %s (%s); once per checkpoint", fmt, path, why)
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{fmt}-", dir=folder)  # same file system: os.replace is atomic
        try:
            result = export_run(run.run_dir, fmt, tmp, cfg.MODEL.WEIGHTS, _readable(samples, NUM_SAMPLES),
                                NUM_SAMPLES, min(threshold, EXPORT_SCORE_THRESHOLD), max(cap, EXPORT_MAX_DETECTIONS))
            os.replace(result.path, path)
            os.replace(result.report, report)  # last: see _stale
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    with open(report, encoding="utf-8") as f:
        ok = bool(json.load(f)["ok"])
    return load_exported(path), ok, report


def _onnxruntime_missing() -> str | None:
    missing = []
    for name in ("onnxruntime", "onnx"):  # optional (requirements-dev.txt)
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return " and ".join(missing) or None


def _auto(run: Run, samples: Sequence[str] | None) -> tuple[str, str, tuple | None]:
    """(backend, why, the loaded ONNX model's :func:`exported_model` triple or None) for ``backend=auto``."""
    if run.d2cfg.MODEL.DEVICE != "cpu":
        return "eager", f"device {run.d2cfg.MODEL.DEVICE} (the exported graph runs on CPU)", None
    missing = _onnxruntime_missing()
    if missing:
        return "eager", f"{missing} not installed (pip install onnx onnxruntime for ONNX Runtime on CPU)", None
    try:
        loaded = exported_model(run, "onnx", samples)
    except (UserError, RuntimeError) as e:  # no sample images, an operator without an ONNX symbolic
        return "eager", f"no ONNX export ({str(e).splitlines()[0]})", None
    if not loaded[1]:
        return "eager", f"the ONNX export differs from the eager model on its sample images ({loaded[2]})", None
    return "onnx", f"ONNX Runtime on CPU, the export matched the eager model ({loaded[2]})", loaded


def open_predictor(run: Run, backend: str, keep_classes: list[int] | None = None, amp: bool = False,
                   samples: Sequence[str] | None = None) -> Any:
    """The predictor ``predict_source(backend=...)`` calls (pass this function as its ``open_model``).

    Args:
        run (Run): the opened run.
        backend (str): ``eager``, ``onnx``, ``torchscript`` or ``auto``.
        keep_classes (list[int] or None): class indices to keep.
        amp (bool): fp16 on CUDA (eager only).
        samples (list[str] or None): the input images, to check a new export on; None: the run's validation set.

    Returns:
        BatchPredictor or ExportedPredictor: ``preprocess``, ``__call__``, ``empty_masks``, ``backend``.
    """
    loaded = None  # auto has loaded the ONNX model already: one ONNX Runtime session, not two
    if backend == "auto":
        backend, why, loaded = _auto(run, samples)
        logger.info("backend=auto: %s — %s", backend, why)
    if backend == "eager":
        return BatchPredictor(run.d2cfg, amp=amp, keep_classes=keep_classes)
    missing = _onnxruntime_missing() if backend == "onnx" else None
    if missing:
        raise UserError(f"backend=onnx needs {missing} — pip install onnx onnxruntime "
                        "(or pip install -r requirements-dev.txt), or use backend=eager")
    if run.d2cfg.MODEL.DEVICE != "cpu":
        logger.warning("backend=%s runs on CPU (the exported graph holds CPU constants), not %s", backend,
                       run.d2cfg.MODEL.DEVICE)
    model, ok, report = loaded or exported_model(run, backend, samples)
    if not ok:
        logger.warning("the %s export differs from the eager model on some sample images (%s)", backend, report)
    cfg = run.d2cfg
    return ExportedPredictor(model, float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), int(cfg.TEST.DETECTIONS_PER_IMAGE),
                             keep_classes)
