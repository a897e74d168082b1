"""``evaluate_run``: COCO box/mask AP of a trained run on its validation split."""
from __future__ import annotations

import os
from typing import Any

from .. import compat

compat.apply()

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402

from ..evaluation import build_evaluator, save_results  # noqa: E402
from .run import load_run  # noqa: E402
from .trainer import Trainer  # noqa: E402

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: str, checkpoint: str = "model_final.pth", output: str | None = None,
                 device: str = "auto") -> dict[str, Any]:
    """Evaluate ``<run_dir>/<checkpoint>`` and write ``<output>/results.json`` (default ``<run_dir>/eval``).

    Returns:
        dict: ``{"bbox": {...}, "segm": {...}}``, AP in percent (Detectron2's layout).
    """
    run = load_run(run_dir, checkpoint, device)
    output = output or os.path.join(run_dir, "eval")
    model = Trainer.build_model(run.d2cfg)
    DetectionCheckpointer(model).load(run.d2cfg.MODEL.WEIGHTS)
    results = Trainer.test(run.d2cfg, model, evaluators=[build_evaluator(run.dataset.val_name, output)])
    save_results(results, os.path.join(output, "results.json"))
    return results
