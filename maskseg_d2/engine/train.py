"""``train(cfg)``: register data -> Detectron2 config -> weights -> train -> final COCO eval -> masked images.

Around it: secrets are redacted from everything the run writes (:mod:`maskseg_d2.utils.secrets`), the run
dir and the free disk space are checked before any work, and a write that fails mid-run (disk full) is a
one-line error naming the file (:mod:`maskseg_d2.utils.preflight`).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor, default_setup
from detectron2.utils import comm

from ..config import build_d2_cfg, config_file_path, departs_from_base
from ..data import register_dataset
from ..errors import UserError
from ..evaluation import format_ap_table, save_results
from ..utils.logs import open_run_log
from ..utils.preflight import check_disk_space, check_output_dir, disk_errors
from ..utils.run_info import read_run_info, record_resume, save_run_info
from ..utils.secrets import redact_tree
from ..utils.secrets import protect_run, redact_file, redact_hydra_outputs
from ..visualization import draw_val_predictions
from .resume import resume_requested, settings_diff
from .trainer import Trainer
from .weights import prepare_weights

__all__ = ["train", "preflight", "overfit_subset"]

logger = logging.getLogger(__name__)


def overfit_subset(dataset: Any, num_images: int) -> Any:
    """Register ``<name>_overfit`` = the first ``num_images`` training images, used for training AND evaluation.

    Args:
        dataset (DatasetInfo): what :func:`maskseg_d2.data.register_dataset` returned.
        num_images (int): how many training images to keep.

    Returns:
        DatasetInfo: a copy whose train and val names both point at the subset.
    """
    records = DatasetCatalog.get(dataset.train_name)[:num_images]
    if not records:
        raise UserError(f"overfit_images={num_images}: {dataset.train_name} has no images — check the "
                        f"dataset's train split, or set overfit_images=0")
    name = f"{dataset.train_name.rsplit('_', 1)[0]}_overfit"
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    meta = MetadataCatalog.get(dataset.train_name).as_dict()
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    logger.info("overfit_images=%d: training and evaluating on the same %d images (%s)", num_images, len(records), name)
    return dataclasses.replace(dataset, train_name=name, val_name=name, num_train=len(records), num_val=len(records))


def _with_weights(d2cfg, weights: str):
    cfg = d2cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return cfg


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train Mask R-CNN as configured and evaluate it on the validation split.

    ``resume`` (true, or the run dir itself as :class:`~maskseg_d2.engine.resume.ResumeRun` sets it for
    ``resume=<run dir>|last``) continues from ``<run dir>/last_checkpoint``: weights, optimizer, scheduler,
    iteration, best metric. The first run's ``run_info.json`` items and resolved config are kept; the resume is
    appended (:func:`maskseg_d2.utils.run_info.record_resume`).

    Args:
        cfg (DictConfig): composed ``configs/train.yaml``; ``cfg.paths.output_dir`` is the run dir.

    Returns:
        dict: Detectron2's results ``{"bbox": {...}, "segm": {...}}`` (AP in percent) of the last evaluation,
        also saved to ``<run dir>/eval/results.json``; plus ``"val": {"total_loss": ...}`` when the
        validation loss was computed (``solver.eval_period > 0``).

    Raises:
        UserError: bad config/data, weights that cannot be fetched, resume without a checkpoint, divergence,
            an output dir that cannot be written, too little free disk, a write that failed (disk full).
    """
    output_dir = str(cfg.paths.output_dir)
    protect_run(cfg)  # from here on, secret values are *** in every log line
    check_output_dir(output_dir)
    open_run_log(output_dir)  # one log.txt: our lines and Detectron2's (maskseg_d2/utils/logs.py)
    with disk_errors(output_dir):
        return _train(cfg, output_dir)


def _protect_saved_configs(output_dir: str) -> None:
    """Redact the configs that Hydra (before us) and Detectron2's ``default_setup`` wrote."""
    if comm.get_rank() != 0:
        return
    done = redact_hydra_outputs(output_dir)
    d2_config = os.path.join(output_dir, "config.yaml")  # written by default_setup
    if redact_file(d2_config):
        done.append(d2_config)
    if done:
        logger.info("Secret values replaced with *** in %s", ", ".join(done))


def _prepare(cfg: DictConfig, output_dir: str) -> tuple[Any, Any, str]:
    """Data, Detectron2 config, disk space and weights: everything that can fail before the model is built."""
    dataset = register_dataset(cfg.dataset)
    if int(cfg.get("overfit_images") or 0) > 0:
        dataset = overfit_subset(dataset, int(cfg.overfit_images))
    d2cfg = build_d2_cfg(cfg, dataset, output_dir)
    check_disk_space(output_dir, d2cfg, cfg.get("min_free_gb"), cfg.solver.get("max_to_keep"))
    requested = d2cfg.MODEL.WEIGHTS
    d2cfg = _with_weights(d2cfg, prepare_weights(requested, output_dir))  # offline: one line, before any work
    return dataset, d2cfg, requested


def preflight(cfg: DictConfig) -> None:
    """Run the checks of :func:`train` once, in the launching process, before DDP workers start.

    A bad dataset, a full disk or weights that cannot be downloaded then end in the one-line error (exit 2)
    instead of a traceback from each worker; the weights are also fetched once instead of once per worker.
    """
    output_dir = str(cfg.paths.output_dir)
    protect_run(cfg)
    check_output_dir(output_dir)
    with disk_errors(output_dir):
        _prepare(cfg, output_dir)


def _record_resume(cfg: DictConfig, output_dir: str, trainer: Trainer) -> None:
    """Append this resume to run_info.json: when, from which iteration, and the settings changed since the
    first run (both resolved, secrets as ``***``)."""
    first = os.path.join(output_dir, "config_resolved.yaml")
    now = redact_tree(OmegaConf.to_container(cfg, resolve=True))
    changed = settings_diff(OmegaConf.to_container(OmegaConf.load(first)), now, changeable=True) \
        if os.path.isfile(first) else {}
    changed.pop("resume", None)
    n = record_resume(output_dir, cfg, {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from_iteration": trainer.start_iter,
        "checkpoint": os.path.basename(trainer.checkpointer.resumed_from),
        "max_iter": trainer.max_iter,
        "changed": changed,
    })
    logger.info("Resume %d of %s recorded in run_info.json (changed since the first run: %s)", n, output_dir,
                ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "nothing")


def _train(cfg: DictConfig, output_dir: str) -> dict[str, Any]:
    dataset, d2cfg, requested = _prepare(cfg, output_dir)
    resuming = resume_requested(cfg, output_dir)
    # opts: the command line, logged to log.txt as Detectron2's tools do (secrets redacted by the log hook)
    default_setup(d2cfg, argparse.Namespace(config_file="", eval_only=False, resume=resuming, opts=sys.argv[1:]))
    _protect_saved_configs(output_dir)
    first_run = not (resuming and read_run_info(output_dir))  # a run killed before run_info.json: write it now
    if first_run and comm.is_main_process():
        save_run_info(output_dir, cfg, dataset, extra={
            "weights": {"requested": requested, "loaded": d2cfg.MODEL.WEIGHTS},
            "schedule": {"max_iter": d2cfg.SOLVER.MAX_ITER, "ims_per_batch": d2cfg.SOLVER.IMS_PER_BATCH,
                         "epochs": cfg.solver.get("epochs")},
            "model_config": {"file": config_file_path(str(cfg.model.config_file)),
                             "departs_from_base": departs_from_base(d2cfg, str(cfg.model.config_file))},
        })

    trainer = Trainer(d2cfg, hydra_cfg=cfg)
    try:
        trainer.resume_or_load(resume=resuming)
    except BaseException:
        if trainer.wandb_writer is not None:  # train() and its finally never ran
            trainer.wandb_writer.finish(exit_code=1)
        raise
    if resuming and comm.is_main_process():
        _record_resume(cfg, output_dir, trainer)
    results = trainer.train() or {}
    save_results(results, os.path.join(output_dir, "eval", "results.json"))
    val = getattr(trainer, "last_val_losses", None)
    if val:  # optimized_metric=val/total_loss works for sweeps too (results.json keeps the COCO layout)
        results = {**results, "val": {k.split("/", 1)[1]: v for k, v in val.items()}}

    if cfg.num_vis > 0:
        weights = os.path.join(output_dir, "model_final.pth")
        records = DatasetCatalog.get(dataset.val_name)[: int(cfg.num_vis)]
        draw_val_predictions(DefaultPredictor(_with_weights(d2cfg, weights)), records, dataset.val_name,
                             os.path.join(output_dir, "vis"), float(cfg.vis_score_threshold))
    logger.info("Evaluation on %s:\n%s", dataset.val_name, format_ap_table(results))
    return results
