"""The run directory that ``tools/train.py`` writes, opened the same way by every tool that reads one.

A run directory is Hydra's run dir and Detectron2's ``OUTPUT_DIR``::

    config.yaml            Detectron2's config (``default_setup``)
    config_resolved.yaml   the resolved Hydra config, and run_info.json: classes, split sizes, schedule
    model_best.pth, model_final.pth, model_<iter>.pth, last_checkpoint
    metrics.json, eval/results.json, .hydra/

Evaluation, prediction, export, ``tools/visualize.py``, the notebook helpers and the leaderboard go through
:class:`Run`, so finding a run, choosing its checkpoint and reading its configs and classes are written (and
fail with the same messages) once.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detectron2.config import CfgNode, get_cfg

from ..config import resolve_device
from ..data import register_dataset
from ..errors import UserError
from ..utils.paths import project_root
from ..utils.run_info import read_run_info

__all__ = ["Run", "RUN_ENV", "RESULTS", "CHECKPOINT_ORDER"]

RUN_ENV = "MASKSEG_RUN"  # the run the notebook looks at when none is passed
RESULTS = os.path.join("eval", "results.json")  # the final evaluation training writes
CHECKPOINT_ORDER = ("model_best.pth", "model_final.pth")  # the default checkpoint: the first that exists
_RUN_MARKERS = ("config_resolved.yaml", ".hydra", RESULTS)  # any of them: a run dir, finished or not


def _incomplete(path: str, run_dir: str) -> UserError:
    return UserError(f"{path}: missing — {run_dir} is not a complete maskseg-d2 run dir (was training interrupted?)")


def _read_classes(run_dir: str) -> list[str]:
    """Class names from ``run_info.json``, else ``config_resolved.yaml`` (no dataset needed)."""
    classes = read_run_info(run_dir).get("dataset", {}).get("thing_classes")
    if classes:
        return [str(c) for c in classes]
    resolved = os.path.join(run_dir, "config_resolved.yaml")
    if os.path.isfile(resolved):
        classes = OmegaConf.load(resolved).get("dataset", {}).get("classes")
        if classes:
            return [str(c) for c in classes]
    raise UserError(f"{run_dir}: neither run_info.json nor config_resolved.yaml names the classes — "
                    "pass a run dir written by tools/train.py")


@dataclass
class Run:
    """A run directory opened with one checkpoint: its Detectron2 config and its classes.

    Opening reads no dataset: the classes come from ``run_info.json``, so a run directory copied to another
    machine predicts and exports without the training data. :attr:`dataset` registers the data when asked.

    Attributes:
        run_dir (str): the run directory.
        d2cfg (CfgNode): its Detectron2 config, frozen: ``MODEL.WEIGHTS`` = the chosen checkpoint,
            ``MODEL.DEVICE`` resolved, ``DATALOADER.NUM_WORKERS`` 0, thresholds as given to :meth:`open`.
        thing_classes (list[str]): class names; index = predicted class.
    """

    run_dir: str
    d2cfg: CfgNode
    thing_classes: list[str]

    @classmethod
    def open(cls, run_dir: str | None, checkpoint: str | None = None, device: str = "auto", *,
             score_threshold: float | None = None, max_detections: int | None = None) -> Run:
        """Read a run directory's Detectron2 config and classes, and point the model at a checkpoint.

        Args:
            run_dir (str): a directory written by ``tools/train.py``.
            checkpoint (str or None): file name inside the run dir, or a path; None: see
                :meth:`resolve_checkpoint`.
            device (str): auto | cpu | cuda[:N].
            score_threshold (float or None): ``ROI_HEADS.SCORE_THRESH_TEST`` (detections below are dropped);
                None: the run's.
            max_detections (int or None): ``TEST.DETECTIONS_PER_IMAGE``; None: the run's.

        Returns:
            Run: the opened run.
        """
        if not run_dir or not os.path.isdir(run_dir):
            raise UserError(f"run={run_dir}: not a directory — pass a run dir printed by tools/train.py "
                            f"(e.g. run=outputs/demo/runs/<time>_demo_r18_fpn_scratch)")
        d2_yaml = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(d2_yaml):
            raise _incomplete(d2_yaml, run_dir)
        checkpoint = cls.resolve_checkpoint(run_dir, checkpoint)
        weights = checkpoint if os.path.isfile(checkpoint) else os.path.join(run_dir, checkpoint)
        if not os.path.isfile(weights):
            have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth"))
            raise UserError(f"{weights}: checkpoint not found — available in {run_dir}: "
                            f"{', '.join(have) or 'none'} (was training interrupted? pass checkpoint=<file>)")
        if score_threshold is not None and not 0.0 <= float(score_threshold) <= 1.0:
            raise UserError(f"score_threshold={score_threshold}: must be in [0, 1] (e.g. 0.5)")
        if max_detections is not None and int(max_detections) < 1:
            raise UserError(f"max_detections={max_detections}: must be >= 1 (e.g. 100)")
        d2cfg = get_cfg()
        d2cfg.set_new_allowed(True)  # tolerate keys added by a newer/older maskseg-d2
        d2cfg.merge_from_file(d2_yaml)
        d2cfg.MODEL.WEIGHTS = weights
        d2cfg.MODEL.DEVICE = resolve_device(device)
        d2cfg.DATALOADER.NUM_WORKERS = 0
        if score_threshold is not None:
            d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
        if max_detections is not None:
            d2cfg.TEST.DETECTIONS_PER_IMAGE = int(max_detections)
        d2cfg.freeze()
        classes = _read_classes(run_dir)
        if len(classes) != d2cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise UserError(f"{run_dir}: run_info.json lists {len(classes)} classes but the model has "
                            f"{d2cfg.MODEL.ROI_HEADS.NUM_CLASSES} — the run dir mixes files of two runs")
        return cls(run_dir, d2cfg, classes)

    @staticmethod
    def resolve_checkpoint(run_dir: str, checkpoint: str | None = None) -> str:
        """``checkpoint`` when given; else ``model_best.pth``, ``model_final.pth``, or the one named in
        ``last_checkpoint`` (an interrupted run), whichever exists first."""
        if checkpoint:
            return str(checkpoint)
        for name in CHECKPOINT_ORDER:
            if os.path.isfile(os.path.join(run_dir, name)):
                return name
        last = os.path.join(run_dir, "last_checkpoint")
        if os.path.isfile(last):
            with open(last) as f:
                return f.read().strip()
        return CHECKPOINT_ORDER[-1]  # open() reports it missing, listing what exists

    @staticmethod
    def find_dir(run: str | None = None, root: str | None = None) -> str:
        """The run directory to look at: ``run``, else ``$MASKSEG_RUN``, else the newest run under ``outputs/``.

        Args:
            run (str or None): a run directory.
            root (str or None): where runs are searched (``<root>/<task>/runs/<run>`` and sweep jobs
                ``<root>/<task>/multiruns/<time>/<job>``); None: ``<project>/outputs``.

        Returns:
            str: an existing run directory holding ``config.yaml`` (the newest by that file's time).
        """
        run = run or os.environ.get(RUN_ENV)
        if run:
            if not os.path.isfile(os.path.join(run, "config.yaml")):
                raise UserError(f"{run}: not a run directory (no config.yaml) — set {RUN_ENV} to a dir printed by "
                                "tools/train.py")
            return run
        root = root or os.path.join(project_root(), "outputs")
        found = [os.path.dirname(p) for pattern in ("*/runs/*/config.yaml", "*/multiruns/*/*/config.yaml")
                 for p in glob.glob(os.path.join(root, pattern))]
        if not found:
            raise UserError(f"{root}: no run found — train one (make demo) or set {RUN_ENV}=<run dir>")
        return max(found, key=lambda d: os.path.getmtime(os.path.join(d, "config.yaml")))

    @staticmethod
    def is_run_dir(path: str) -> bool:
        """True for a directory training started to write, finished or not (a failed sweep job included)."""
        return any(os.path.exists(os.path.join(path, n)) for n in _RUN_MARKERS)

    @property
    def name(self) -> str:
        """str: the run directory's name (used as the Label Studio ``model_version``)."""
        return os.path.basename(os.path.normpath(self.run_dir))

    @cached_property
    def cfg(self) -> DictConfig:
        """DictConfig: the resolved Hydra config of the run (``config_resolved.yaml``)."""
        path = os.path.join(self.run_dir, "config_resolved.yaml")
        if not os.path.isfile(path):
            raise _incomplete(path, self.run_dir)
        return OmegaConf.load(path)

    @cached_property
    def dataset(self) -> Any:
        """DatasetInfo: the run's dataset, registered (its data must be on disk).

        A run trained from a live Label Studio project reads the snapshot it trained on (``run_info.json``), offline,
        whatever the project holds now."""
        sha = read_run_info(self.run_dir).get("dataset", {}).get("source", {}).get("sha")
        return register_dataset(OmegaConf.merge(self.cfg.dataset, {"snapshot": sha}) if sha else self.cfg.dataset)

    def split_name(self, split: str = "val") -> str:
        """The registered name of the run's ``val`` or ``train`` split."""
        return self.dataset.val_name if split == "val" else self.dataset.train_name
