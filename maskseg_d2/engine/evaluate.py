"""``tools/eval.py``'s library side: evaluate a trained run, a COCO results file, or compare runs.

* ``run=<run dir>``: the run's best checkpoint (``model_best.pth``, else ``model_final.pth``, else the
  last one) predicts its validation split (``split=train`` or another ``dataset=``), then
  :mod:`maskseg_d2.evaluation` writes tables, plots, the confusion matrix and the worst images;
* ``gt=<COCO json> pred=<COCO results json>``: the same report without a model;
* ``compare=[runA,runB]`` or ``compare=<sweep dir>``: one leaderboard.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.data import build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model

from ..data import register_dataset
from ..errors import UserError, fail
from ..evaluation import build_evaluator
from ..evaluation.report import Report, evaluate_coco, write_report
from .checkpoint import SafeCheckpointer
from .leaderboard import compare_runs
from .run import Run

__all__ = ["EvalSummary", "evaluate", "evaluate_run"]

SPLITS = ("val", "train")


def _dataset_for(run: Run, dataset: Any, split: str):
    if split not in SPLITS:
        raise fail(f"split={split}", "unknown split", f"use one of {', '.join(SPLITS)}")
    if dataset is None:
        return run.dataset, run.split_name(split)
    info = register_dataset(dataset)
    if list(info.thing_classes) != list(run.thing_classes):
        raise fail(
            f"dataset={info.train_name[:-6]}",
            f"classes {info.thing_classes} differ from the model's {run.thing_classes}",
            "evaluate on a dataset with the same classes (same order)",
        )
    return info, info.val_name if split == "val" else info.train_name


def evaluate_run(
    run_dir: str,
    checkpoint: str | None = None,
    output: str | None = None,
    device: str = "auto",
    *,
    split: str = "val",
    dataset: Any = None,
    backend: str = "auto",
    score_thresh: float = 0.5,
    num_worst: int = 8,
    plots: bool = True,
    model_score_thresh: float | None = None,
) -> Report:
    """Predict ``split`` with a trained run's model and write ``<output>/results.{json,csv,md}``, plots and
    worst images (:func:`maskseg_d2.evaluation.report.write_report`).

    Args:
        run_dir (str): a directory written by ``tools/train.py``.
        checkpoint (str or None): file in the run dir or a path; None: see :meth:`Run.resolve_checkpoint`.
        output (str or None): default ``<run_dir>/eval/<checkpoint stem>_<dataset split>``.
        device (str): auto | cpu | cuda.
        split (str): ``val`` or ``train``.
        dataset (DictConfig or None): evaluate on another dataset config with the same classes.
        backend, score_thresh, num_worst, plots: see :func:`maskseg_d2.evaluation.report.evaluate_coco`.
        model_score_thresh (float or None): overrides the run's ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``
            (Detectron2: 0.05), the lowest score a prediction needs to be kept at all (and so to count in AP).

    Returns:
        Report: ``results`` (``{"bbox": {...}, "segm": {...}}``, AP in percent, Detectron2's layout), the
        markdown and the written files.
    """
    run = Run.open(run_dir, checkpoint, device)
    if model_score_thresh is not None:
        run.d2cfg.defrost()
        run.d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(model_score_thresh)
        run.d2cfg.freeze()
    info, name = _dataset_for(run, dataset, split)
    stem = os.path.splitext(os.path.basename(run.d2cfg.MODEL.WEIGHTS))[0]
    output = output or os.path.join(run_dir, "eval", f"{stem}_{name}")
    model = build_model(run.d2cfg)
    SafeCheckpointer(model).load(run.d2cfg.MODEL.WEIGHTS)  # weights_only: no pickled code runs
    evaluator = build_evaluator(name, output, backend=backend)
    inference_on_dataset(model, build_detection_test_loader(run.d2cfg, name), evaluator)
    if evaluator.ground_truth is None:
        raise fail(name, "no images to evaluate", "check the dataset split (val_fraction) and the images")
    header = {
        "run": run_dir,
        "checkpoint": run.d2cfg.MODEL.WEIGHTS,
        "data": f"{name} ({len(evaluator.ground_truth.dataset['images'])} images, "
        f"{len(evaluator.ground_truth.dataset['annotations'])} instances)",
        "predictions": f"{len(evaluator.predictions.results)} (score >= "
        f"{run.d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST:g}, device {run.d2cfg.MODEL.DEVICE})",
    }
    return write_report(
        evaluator.ground_truth,
        evaluator.predictions,
        evaluator.evaluations,
        output,
        header,
        score_thresh=score_thresh,
        num_worst=num_worst,
        plots=plots,
    )


def _plain(value: Any) -> Any:
    return (
        OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
    )


@dataclasses.dataclass(frozen=True)
class EvalSummary:
    """What :func:`evaluate` did: the markdown to print and the folder it wrote to (its ``log.txt`` goes there)."""

    markdown: str
    output: str

    def message(self) -> str:
        return f"{self.markdown}\nwrote {self.output}/"


def evaluate(cfg: DictConfig) -> EvalSummary:
    """Run what ``configs/eval.yaml`` asks for.

    Args:
        cfg (DictConfig): composed ``eval.yaml``: one of ``run``, ``gt`` + ``pred``, ``compare``.

    Returns:
        EvalSummary: the AP tables (or leaderboard) as markdown and the output folder.
    """
    modes = [
        m for m, on in (("run=", cfg.run), ("gt=/pred=", cfg.gt or cfg.pred), ("compare=", cfg.compare)) if on
    ]
    if len(modes) > 1:
        raise UserError(
            f"{' and '.join(modes)} given — choose one: run=<run dir>, gt=<COCO json> pred=<results "
            "json>, or compare=[runA,runB]"
        )
    common = dict(
        backend=str(cfg.backend),
        score_thresh=float(cfg.score_thresh),
        num_worst=int(cfg.num_worst),
        plots=bool(cfg.plots),
    )
    output = str(cfg.output) if cfg.output else None
    if cfg.compare:
        md, paths = compare_runs(_plain(cfg.compare), output)
        return EvalSummary(md, os.path.dirname(paths[-1]))
    if cfg.gt or cfg.pred:
        if not (cfg.gt and cfg.pred):
            raise UserError(
                "gt= and pred= go together — python tools/eval.py gt=<COCO instances json> "
                "pred=<COCO results json>"
            )
        report = evaluate_coco(
            str(cfg.gt),
            str(cfg.pred),
            output,
            image_root=str(cfg.image_root) if cfg.image_root else None,
            **common,
        )
    elif cfg.run:
        report = evaluate_run(
            str(cfg.run),
            cfg.checkpoint,
            output,
            str(cfg.device),
            split=str(cfg.split),
            dataset=cfg.get("dataset"),
            model_score_thresh=cfg.model_score_thresh,
            **common,
        )
    else:
        raise UserError(
            "run= is required — python tools/eval.py run=outputs/<task>/runs/<run dir> "
            "(or gt=<COCO json> pred=<results json>, or compare=[runA,runB])"
        )
    return EvalSummary(report.markdown, os.path.dirname(report.files[-1]))
