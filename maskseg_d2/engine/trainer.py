"""``Trainer``: Detectron2's DefaultTrainer with our evaluator and data loaders (build_* overrides only)."""
from __future__ import annotations

import os

from .. import compat

compat.apply()

from detectron2.engine import DefaultTrainer  # noqa: E402

from ..evaluation import build_evaluator  # noqa: E402

__all__ = ["Trainer"]


class Trainer(DefaultTrainer):
    """DefaultTrainer + COCO evaluation (bbox and segm) written under ``OUTPUT_DIR/eval``."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(dataset_name, output_folder or os.path.join(cfg.OUTPUT_DIR, "eval"))
