"""``Trainer``: Detectron2's DefaultTrainer with what practitioners ask for, through build_* overrides and hooks.

Added to DefaultTrainer's loop (no copy of it): configurable augmentations (``build_train_loader``; a batch of
them drawn to ``train_batch.jpg`` at the first start), writers per ``logger`` (TensorBoard, W&B) (``build_writers``),
and after the EvalHook a validation-loss hook, a best checkpoint (``model_best.pth`` + ``best_metric.json``) and early
stopping (``build_hooks``). ``train()`` turns NaN/Inf losses into a one-line :class:`~maskseg_d2.errors.UserError`
naming the cause and the last good checkpoint, ends early-stopped runs cleanly, draws ``curves.png``, writes
``eval_history.csv`` (one row per evaluation) and finishes the W&B run in a ``finally``. Checkpoints go through
:class:`~maskseg_d2.engine.checkpoint.SafeCheckpointer` (atomic saves, resume past a broken file, ``weights_only``
loading).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import cv2
import torch

from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

from ..config import add_maskseg_config
from ..data.augmentations import build_test_augmentations, build_train_augmentations
from ..errors import UserError
from ..evaluation import build_evaluator
from ..utils.fileio import atomic_write
from ..visualization.curves import plot_training_curves
from ..visualization.train_batch import draw_train_batch
from .checkpoint import SafeCheckpointer
from .hooks import (BestCheckpointer, Diverged, EarlyStop, EarlyStopping, PeriodicWriter,
                    PredictionSampler, ValidationLoss, preserved_rng)
from .eval_history import write_eval_history

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


def _has_instances(record: dict) -> bool:
    return any(not a.get("iscrowd", 0) for a in record.get("annotations", []))


class Trainer(DefaultTrainer):
    """DefaultTrainer + augmentations, COCO evaluation, validation loss, best checkpoint, early stopping,
    TensorBoard/W&B writers, divergence check.

    Behaviour comes from the CfgNode (``TEST.EVAL_PERIOD``, ``SOLVER.AMP``, ``SOLVER.CLIP_GRADIENTS``,
    ``MASKSEG.*``, e.g. ``MASKSEG.CPU_BF16``: see :func:`maskseg_d2.config.add_maskseg_config`); the Hydra config,
    when given, only selects and configures the writers (``logger``).
    """

    def __init__(self, cfg, hydra_cfg: Any = None) -> None:
        """
        Args:
            cfg (CfgNode): from :func:`maskseg_d2.config.build_d2_cfg`.
            hydra_cfg (DictConfig or None): the composed Hydra config; ``logger.name`` picks the writers
                (none | tensorboard | wandb). None: console, metrics.json and TensorBoard.
        """
        if "MASKSEG" not in cfg:  # a CfgNode not made by build_d2_cfg: our defaults
            cfg = cfg.clone()
            cfg.defrost()
            add_maskseg_config(cfg)
            cfg.freeze()
        self.hydra_cfg = hydra_cfg
        self.wandb_writer = None
        self.stop_reason = ""  # why training ended before MAX_ITER (early stopping), "" otherwise
        super().__init__(cfg)  # calls build_hooks() -> build_writers()

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpointer(self) -> SafeCheckpointer:
        return self._checkpointer

    @checkpointer.setter
    def checkpointer(self, value) -> None:
        # DefaultTrainer.__init__ assigns a DetectionCheckpointer and builds the hooks right after: swapping it
        # here (same model, folder and checkpointables) hands the PeriodicCheckpointer and BestCheckpointer
        # hooks the atomic, safe-loading one.
        self._checkpointer = value if isinstance(value, SafeCheckpointer) else SafeCheckpointer.from_checkpointer(value)

    # ------------------------------------------------------------------------------------ build_*
    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        if cfg.MASKSEG.get("CPU_BF16", False):  # oneDNN's bf16 convolutions run fastest on NHWC (channels-last) tensors
            model.to(memory_format=torch.channels_last)
        return model

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(dataset_name, output_folder or os.path.join(cfg.OUTPUT_DIR, "eval"))

    @classmethod
    def build_train_mapper(cls, cfg) -> DatasetMapper:
        """The training mapper: DatasetMapper applies each augmentation's transform to image, masks and boxes."""
        return DatasetMapper(cfg, is_train=True, augmentations=build_train_augmentations(cfg))

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=cls.build_train_mapper(cfg))

    @classmethod
    def mapped_train_samples(cls, cfg, num_images: int = 16) -> list[dict]:
        """The first ``num_images`` training images as the model receives them (the training mapper, augmented).

        The python/numpy/torch random streams are restored afterwards: drawing them changes no training run.

        Args:
            cfg (CfgNode): the run's config (``DATASETS.TRAIN``, ``INPUT.*``, ``MASKSEG.AUGMENT.*``).
            num_images (int): how many.

        Returns:
            list[dict]: DatasetMapper outputs (``image`` tensor, ``instances``, ``file_name``...).
        """
        records = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        with preserved_rng():
            mapper = cls.build_train_mapper(cfg)
            return [mapper(record) for record in records[:num_images]]  # the mapper copies each record

    def write_train_batch(self, path: str | None = None) -> str:
        """Draw one batch of mapped training samples (``SOLVER.IMS_PER_BATCH``, 4 to 16) to ``train_batch.jpg``.

        Returns:
            str: the JPEG's path.
        """
        path = path or os.path.join(self.cfg.OUTPUT_DIR, "train_batch.jpg")
        samples = self.mapped_train_samples(self.cfg, min(max(self.cfg.SOLVER.IMS_PER_BATCH, 4), 16))
        grid = draw_train_batch(samples, MetadataCatalog.get(self.cfg.DATASETS.TRAIN[0]), self.cfg.INPUT.FORMAT,
                                cell=320)
        ok, jpeg = cv2.imencode(".jpg", grid[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        atomic_write(path, lambda f: f.write(jpeg.tobytes()))
        return path

    @classmethod
    def build_val_loss_loader(cls, cfg, dataset_name: str):
        """Validation images *with* their instances, resized like at test time, one per batch."""
        records = [r for r in DatasetCatalog.get(dataset_name) if _has_instances(r)]
        mapper = DatasetMapper(cfg, is_train=True, augmentations=build_test_augmentations(cfg),
                               recompute_boxes=False)
        return build_detection_test_loader(records, mapper=mapper, num_workers=0)  # small split: no worker start-up

    def _logger_name(self) -> str:
        if self.hydra_cfg is None or "logger" not in self.hydra_cfg:
            return "tensorboard"
        return str(self.hydra_cfg.logger.get("name", "none"))

    def build_writers(self):
        out_dir, name = self.cfg.OUTPUT_DIR, self._logger_name()
        os.makedirs(out_dir, exist_ok=True)
        writers = [CommonMetricPrinter(self.max_iter), JSONWriter(os.path.join(out_dir, "metrics.json"))]
        if name in ("tensorboard", "wandb"):
            writers.append(TensorboardXWriter(out_dir))
        if name == "wandb":
            # optional: imports wandb (~0.5 s and its threads) only for logger=wandb
            from ..tracking.wandb_writer import WandbWriter, init_wandb_run

            dataset = self.cfg.DATASETS.TEST[0]
            self.wandb_writer = WandbWriter(
                init_wandb_run(self.hydra_cfg, self.cfg, out_dir), dataset, MetadataCatalog.get(dataset).thing_classes,
                score_threshold=float(self.hydra_cfg.logger.get("score_threshold", 0.5)))
            writers.append(self.wandb_writer)
        return writers

    def build_hooks(self):
        ret = super().build_hooks()
        period, m = self.cfg.TEST.EVAL_PERIOD, self.cfg.MASKSEG
        at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
        ret[at] = hooks.EvalHook(period, self._evaluate)
        extra = []
        if period > 0 and m.VAL_LOSS and self.cfg.DATASETS.TEST:
            # The CPU demo evaluates only at the end (period 0): no extra work there.
            val_name = self.cfg.DATASETS.TEST[0]
            extra.append(ValidationLoss(period, lambda: self.build_val_loss_loader(self.cfg, val_name)))
        if comm.is_main_process():
            extra.append(BestCheckpointer(period, self.checkpointer, m.BEST_METRIC, m.BEST_MODE))
        if period > 0 and m.EARLY_STOPPING_PATIENCE > 0:
            extra.append(EarlyStopping(period, m.BEST_METRIC, m.EARLY_STOPPING_PATIENCE, m.BEST_MODE,
                                       m.EARLY_STOPPING_MIN_DELTA))
        ret = [PeriodicWriter(h._writers, h._period, period) if isinstance(h, hooks.PeriodicWriter) else h
               for h in ret]  # + a write after each evaluation
        return ret[: at + 1] + extra + ret[at + 1:]  # after the EvalHook, before the PeriodicWriter

    # ------------------------------------------------------------------------------ evaluation
    def _evaluate(self) -> dict:
        evaluators = None
        num_images = int(self.hydra_cfg.logger.get("num_images", 0)) if self.wandb_writer is not None else 0
        if num_images > 0:
            name = self.cfg.DATASETS.TEST[0]
            sampler = PredictionSampler(num_images, lambda s: self.wandb_writer.log_predictions(self.storage.iter, s))
            evaluators = [DatasetEvaluators([self.build_evaluator(self.cfg, name), sampler])]
        self._last_eval_results = self.test(self.cfg, self.model, evaluators=evaluators)
        return self._last_eval_results

    # ------------------------------------------------------------------------------- training
    def resume_or_load(self, resume: bool = True) -> None:
        """Like DefaultTrainer's, but ``resume=True`` without a checkpoint is an error, not a silent restart, and
        a missing/truncated file named by ``last_checkpoint`` falls back to the newest readable one."""
        if resume and not self.checkpointer.has_checkpoint():
            raise UserError(
                f"resume: {os.path.join(self.cfg.OUTPUT_DIR, 'last_checkpoint')} does not exist (nor any "
                f"model_*.pth) — give a run dir that has one: resume=<run dir> or resume=last (or leave resume out "
                f"to start anew)")
        super().resume_or_load(resume=resume)
        if resume:
            logger.info("Resuming from %s at iteration %d of %d", self.checkpointer.resumed_from,
                        self.start_iter, self.max_iter)

    def state_dict(self) -> dict:
        # Detectron2 0.6's DefaultTrainer saves only iteration + hooks: add the optimizer (SGD momentum) and
        # the AMP grad scaler so that resume=true continues the same optimisation (later versions do this too).
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "_trainer" in state:
            self._trainer.load_state_dict(state["_trainer"])

    def run_step(self) -> None:
        try:
            # solver.cpu_amp: the step under bf16 autocast on CPU (SOLVER.AMP is Detectron2's CUDA-only AMPTrainer).
            # Autocast casts the forward's matmuls and convolutions; the backward follows the forward's dtypes and
            # the optimizer updates the fp32 weights (autocast leaves SGD's in-place ops alone).
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(self.cfg.MASKSEG.get("CPU_BF16", False))):
                super().run_step()
        except FloatingPointError as e:  # raised by SimpleTrainer.write_metrics before the optimizer step
            self.max_iter = max(self.max_iter, self.iter + 2)  # after_train hooks: no final eval of a broken model
            raise Diverged(str(e)) from None

    def train(self) -> dict | None:
        """Run training; returns the last evaluation's results (``{"bbox": {...}, "segm": {...}}``) or None.

        Raises:
            UserError: the loss became NaN/Inf (message: cause, fix, last good checkpoint).
        """
        exit_code = 1
        train_batch = os.path.join(self.cfg.OUTPUT_DIR, "train_batch.jpg")
        # a fresh start draws (over an old run's file in a reused dir); a resume keeps the first session's picture
        if comm.is_main_process() and (self.start_iter == 0 or not os.path.exists(train_batch)):
            try:
                logger.info("Training samples as the model sees them: %s", self.write_train_batch(train_batch))
            except Exception as e:  # a picture must never stop a training
                logger.warning("Could not draw train_batch.jpg: %s", e)
        try:
            super().train()
            exit_code = 0
        except EarlyStop as stop:
            self.stop_reason = str(stop)
            self.checkpointer.save("model_final")
            logger.info("Early stopping at iteration %d: %s", self.iter, stop)
            exit_code = 0
        except Diverged as e:
            raise UserError(self._divergence_message(str(e))) from None
        finally:
            self._finish(exit_code)
        return getattr(self, "_last_eval_results", None)

    def _finish(self, exit_code: int) -> None:
        if comm.is_main_process():
            try:
                png = plot_training_curves(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"),
                                           os.path.join(self.cfg.OUTPUT_DIR, "curves.png"))
                if png and self.wandb_writer is not None:
                    self.wandb_writer.log_image_file("curves", png)
            except Exception as e:  # a plot must never hide the training's own outcome
                logger.warning("Could not draw curves.png: %s", e)
            try:
                write_eval_history(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.cfg.OUTPUT_DIR)
            except Exception as e:  # nor a table
                logger.warning("Could not write eval_history.csv: %s", e)
        if self.wandb_writer is not None:
            self.wandb_writer.finish(exit_code)

    # ----------------------------------------------------------------------------- divergence
    def _divergence_message(self, error: str) -> str:
        s = self.cfg.SOLVER
        # the loss values, or the message of the model's own check (e.g. "Predicted boxes ... contain Inf/NaN")
        detail = error.split("loss_dict = ")[-1] if "loss_dict = " in error else error
        detail = f"({detail[:200]})" if detail else ""
        scratch_frozen = not self.cfg.MODEL.WEIGHTS and self.cfg.MODEL.RESNETS.NORM == "FrozenBN"
        cause = ("training from scratch with FrozenBN (norms cannot learn): use model.weights=scratch, which "
                 "switches to BN, or model.d2.MODEL.RESNETS.NORM=BN (GN for small batches)" if scratch_frozen else
                 f"learning rate too high for this model/batch: lower solver.base_lr (now {s.BASE_LR:g}, try "
                 f"{s.BASE_LR / 10:g}), lengthen solver.warmup_iters (now {s.WARMUP_ITERS}) or set "
                 f"solver.clip_gradients.enabled=true (training from scratch also needs trainable BN/GN norms, which "
                 f"model.weights=scratch sets)")
        good = self.checkpointer.last_finite_checkpoint()  # last_checkpoint never names a NaN checkpoint
        # A new run from that checkpoint, not resume=: a resume refuses changed settings such as solver.base_lr.
        where = (f"last good checkpoint kept: {good} (start a new run from it with the fix: model.weights={good})"
                 if good else
                 f"no checkpoint with finite weights was saved before (solver.checkpoint_period={s.CHECKPOINT_PERIOD})")
        return (f"training diverged: the loss became NaN/Inf at iteration {self.iter} {detail} — likely cause: "
                f"{cause}; {where}")

