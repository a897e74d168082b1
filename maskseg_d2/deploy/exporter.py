"""``tools/export.py``'s back-end: trace a run's model, save it, load it back and compare it with the eager one."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from detectron2.data import DatasetCatalog

from ..engine.run import Run
from ..errors import UserError
from ..predict import list_images, read_bgr
from .comparison import Tolerances, compare_models, format_comparison
from .runtime import EagerModel, load_exported
from .tracing import require_onnx, save_onnx, save_torchscript

__all__ = ["FORMATS", "ExportResult", "sample_images", "export_run", "export"]

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}


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


def sample_images(run_dir: str, images: str | Sequence[str] | None, num_images: int) -> list[str]:
    """Images to trace and compare on: ``images`` (file/folder/glob, or a list of files), else the run's
    validation images.

    Args:
        run_dir (str): the run.
        images (str, list[str] or None): where the images are; None: the run's validation split (its dataset
            must be on disk).
        num_images (int): how many (the first ones).

    Returns:
        list[str]: image paths, at least one.
    """
    if images and not isinstance(images, str):
        paths = [str(p) for p in images]
    elif images:
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
    images: str | Sequence[str] | None = None,
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
        images (str, list[str] or None): sample images (file, folder, glob, or a list of files); None: the run's
            validation images.
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
        require_onnx()
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
        save_torchscript(eager.model, example, path, meta)
    else:
        save_onnx(eager.model, example, path, meta, opset)
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
