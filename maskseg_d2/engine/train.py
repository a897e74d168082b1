"""``train(cfg)``: register data -> Detectron2 config -> train -> final COCO eval -> masked images."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from omegaconf import DictConfig

from .. import compat

compat.apply()

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.engine import DefaultPredictor, default_setup  # noqa: E402

from ..config import build_d2_cfg  # noqa: E402
from ..data import register_dataset  # noqa: E402
from ..evaluation import format_ap_table, save_results  # noqa: E402
from ..utils.run_info import save_run_info  # noqa: E402
from ..visualization import draw_val_predictions  # noqa: E402
from .trainer import Trainer  # noqa: E402
from .weights import ensure_weights  # noqa: E402

__all__ = ["train"]

logger = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train Mask R-CNN as configured and evaluate it on the validation split.

    Args:
        cfg (DictConfig): composed ``configs/config.yaml``; ``cfg.paths.output_dir`` is the run dir.

    Returns:
        dict: Detectron2's results ``{"bbox": {...}, "segm": {...}}`` (AP in percent), also saved to
        ``<run dir>/eval/results.json``.
    """
    output_dir = str(cfg.paths.output_dir)
    dataset = register_dataset(cfg.dataset)
    d2cfg = build_d2_cfg(cfg, dataset, output_dir)
    ensure_weights(d2cfg.MODEL.WEIGHTS)
    default_setup(d2cfg, argparse.Namespace(config_file="", eval_only=False, resume=bool(cfg.resume)))
    save_run_info(output_dir, cfg, dataset)

    trainer = Trainer(d2cfg)
    trainer.resume_or_load(resume=bool(cfg.resume))
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None) or {}  # EvalHook always evaluates at the end
    save_results(results, os.path.join(output_dir, "eval", "results.json"))

    if cfg.num_vis > 0:
        pred_cfg = d2cfg.clone()
        pred_cfg.defrost()
        pred_cfg.MODEL.WEIGHTS = os.path.join(output_dir, "model_final.pth")
        records = DatasetCatalog.get(dataset.val_name)[: int(cfg.num_vis)]
        draw_val_predictions(DefaultPredictor(pred_cfg), records, dataset.val_name, os.path.join(output_dir, "vis"))
    logger.info("Evaluation on %s:\n%s", dataset.val_name, format_ap_table(results))
    return results
