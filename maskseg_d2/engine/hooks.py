"""Hooks our Trainer adds to Detectron2's defaults: validation loss, best checkpoint, early stopping.

All of them run on the :class:`~detectron2.engine.hooks.EvalHook` schedule (every ``TEST.EVAL_PERIOD``
iterations and after the last one) and are registered *after* it, so they read the metrics it has just put
into the event storage. :class:`PredictionSampler` rides along inside the evaluation to keep a few
predictions for the W&B images without a second inference pass.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from detectron2.engine import hooks
from detectron2.engine.train_loop import HookBase
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = ["ValidationLoss", "BestCheckpointer", "EarlyStopping", "PeriodicWriter", "PredictionSampler", "EarlyStop",
           "Diverged", "is_eval_iteration", "training_mode_frozen_norms", "preserved_rng"]

logger = logging.getLogger(__name__)


class EarlyStop(BaseException):
    """Raised by :class:`EarlyStopping` to end training.

    A BaseException on purpose: Detectron2's ``TrainerBase.train`` logs every ``Exception`` as a crash with
    a traceback; this one passes through its ``except`` while its ``finally`` still runs ``after_train``
    (writers flushed and closed). :meth:`maskseg_d2.engine.trainer.Trainer.train` catches it.
    """


class Diverged(BaseException):
    """The loss became NaN/Inf (Detectron2's FloatingPointError, re-raised without the crash log)."""


def is_eval_iteration(trainer: Any, period: int) -> bool:
    """Same condition as ``EvalHook.after_step``: a periodic evaluation, not the final one."""
    next_iter = trainer.iter + 1
    return period > 0 and next_iter % period == 0 and next_iter != trainer.max_iter


def _is_final(trainer: Any) -> bool:
    return trainer.iter + 1 >= trainer.max_iter  # EvalHook.after_train: training finished, not crashed


@contextlib.contextmanager
def training_mode_frozen_norms(model: torch.nn.Module) -> Iterator[None]:
    """``model.train()`` (so Detectron2 models return losses) with BatchNorm layers in eval mode.

    Validation images must not update BatchNorm running statistics; using them is also what the
    evaluated model does. Restores the previous mode.
    """
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore python/numpy/torch RNG states afterwards: a hook must not change the training's random stream."""
    py, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


class ValidationLoss(HookBase):
    """Loss on the validation split at each evaluation, logged as ``val/total_loss``, ``val/loss_cls``, ...

    The model runs in training mode (Detectron2 only computes losses then) under ``no_grad``, BatchNorm in
    eval mode, RNG state preserved; the mean over validation images goes to the event storage, so it
    appears in metrics.json, TensorBoard and W&B next to the training losses.
    """

    def __init__(self, eval_period: int, data_loader_factory: Callable[[], Iterable[list[dict]]]) -> None:
        """
        Args:
            eval_period (int): ``TEST.EVAL_PERIOD`` (0: only after the last iteration).
            data_loader_factory (callable): returns an iterable of batches of mapped validation dicts
                *with* ``instances`` (built lazily, once).
        """
        self._period = eval_period
        self._factory = data_loader_factory
        self._loader: Iterable[list[dict]] | None = None

    def compute(self) -> dict[str, float]:
        """Mean validation losses ``{"val/total_loss": ..., "val/<loss>": ...}`` of the current model."""
        if self._loader is None:
            self._loader = self._factory()
        sums: dict[str, float] = {}
        count = 0
        model = self.trainer.model
        with torch.no_grad(), training_mode_frozen_norms(model), preserved_rng():
            for batch in self._loader:
                losses = {k: float(v) for k, v in model(batch).items()}
                losses["total_loss"] = sum(losses.values())
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v * len(batch)
                count += len(batch)
        return {f"val/{k}": v / count for k, v in sums.items()} if count else {}

    def _log(self) -> None:
        losses = self.compute()
        if losses:
            self.trainer.storage.put_scalars(**losses, smoothing_hint=False)
            self.trainer.last_val_losses = losses
            logger.info("Validation loss at iteration %d: %s", self.trainer.iter,
                        "  ".join(f"{k}: {v:.4g}" for k, v in losses.items()))

    def after_step(self) -> None:
        if is_eval_iteration(self.trainer, self._period):
            self._log()

    def after_train(self) -> None:
        if _is_final(self.trainer):
            self._log()


class BestCheckpointer(hooks.BestCheckpointer):
    """Detectron2's BestCheckpointer that also writes ``best_metric.json`` and survives ``resume``.

    ``best_metric.json``: ``{"metric", "mode", "value", "iteration", "checkpoint"}``. Its state (metric, best
    value and iteration) is saved in every checkpoint, so a resumed run does not overwrite a better
    ``model_best.pth`` with its first evaluation. ``last_checkpoint`` keeps pointing at the periodic/final
    checkpoint (resume continues from there). With ``eval_period == 0`` there is a single evaluation: no
    extra checkpoint is written and the json points at ``model_final.pth``.
    """

    def __init__(self, eval_period: int, checkpointer: Any, val_metric: str, mode: str = "max",
                 file_prefix: str = "model_best") -> None:
        super().__init__(eval_period, checkpointer, val_metric, mode, file_prefix)
        self.json_path = os.path.join(checkpointer.save_dir, "best_metric.json")

    def _write_json(self, checkpoint: str) -> None:
        if self.best_metric is None:
            return
        record = {"metric": self._val_metric, "mode": "max" if self._compare(1, 0) else "min",
                  "value": self.best_metric, "iteration": self.best_iter, "checkpoint": checkpoint}
        with open(self.json_path, "w") as f:
            json.dump(record, f, indent=2)

    def _best_checking(self) -> None:
        before = (self.best_metric, self.best_iter)
        if self._period > 0:
            last = self._checkpointer.get_checkpoint_file()
            super()._best_checking()
            if last:  # resume=true continues from the periodic/final checkpoint, never from model_best
                self._checkpointer.tag_last_checkpoint(os.path.basename(last))
        else:
            latest = self.trainer.storage.latest().get(self._val_metric)
            if latest is not None:
                self._update_best(*latest)
        if (self.best_metric, self.best_iter) != before:
            self._write_json(f"{self._file_prefix}.pth" if self._period > 0 else "model_final.pth")

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self._val_metric, "best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") == self._val_metric:  # resumed with another metric: start its record afresh
            self.best_metric, self.best_iter = state.get("best_metric"), state.get("best_iter")


class EarlyStopping(HookBase):
    """Stop when ``metric`` has not improved by more than ``min_delta`` for ``patience`` evaluations.

    Runs after the EvalHook on periodic evaluations; raises :class:`EarlyStop`, which the Trainer turns into
    a clean end of training (``model_final.pth`` written, final results = the last evaluation). A NaN
    metric (e.g. AP with no predictions yet) counts as no improvement.
    """

    def __init__(self, eval_period: int, metric: str, patience: int, mode: str = "max",
                 min_delta: float = 0.0) -> None:
        self._period, self.metric, self.patience = eval_period, metric, patience
        self._sign = 1.0 if mode == "max" else -1.0
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_evals = 0
        self.reason = ""

    def _improved(self, value: float) -> bool:
        if math.isnan(value) or math.isinf(value):
            return False
        return self.best is None or self._sign * (value - self.best) > self.min_delta

    def _should_stop(self) -> bool:
        latest = self.trainer.storage.latest().get(self.metric)
        if latest is None or latest[1] != self.trainer.iter:
            if comm.is_main_process():  # other ranks get no evaluation results
                logger.warning("Early stopping: %s was not evaluated at iteration %d", self.metric, self.trainer.iter)
            return False
        value = latest[0]
        if self._improved(value):
            self.best, self.bad_evals = value, 0
            return False
        self.bad_evals += 1
        self.reason = (f"{self.metric} did not improve by more than {self.min_delta} for {self.bad_evals} "
                       f"evaluation(s) (best {self.best}, last {value})")
        return self.bad_evals >= self.patience

    def after_step(self) -> None:
        if self.patience <= 0 or not is_eval_iteration(self.trainer, self._period):
            return
        decisions = comm.all_gather((self._should_stop(), self.reason))  # all ranks stop together
        if any(stop for stop, _ in decisions):
            raise EarlyStop(next(reason for stop, reason in decisions if stop))

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") == self.metric:
            self.best, self.bad_evals = state.get("best"), int(state.get("bad_evals", 0))


class PeriodicWriter(hooks.PeriodicWriter):
    """Detectron2's PeriodicWriter that also writes right after each periodic evaluation.

    Writers only see the *latest* value of each scalar: with ``eval_period`` shorter than the writer period
    (20), evaluations in between would never reach metrics.json, TensorBoard or W&B.
    """

    def __init__(self, writers: list, period: int = 20, eval_period: int = 0) -> None:
        super().__init__(writers, period)
        self._eval_period = eval_period

    def after_step(self) -> None:
        super().after_step()
        written = (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1
        if not written and is_eval_iteration(self.trainer, self._eval_period):
            for writer in self._writers:
                writer.write()


class PredictionSampler(DatasetEvaluator):
    """Keeps the first ``num_images`` (input, predicted Instances on CPU) pairs of an evaluation.

    Added next to the COCO evaluator (``DatasetEvaluators``), it costs no extra inference; ``on_samples``
    receives the list when the evaluation ends (the W&B writer draws them).
    """

    def __init__(self, num_images: int, on_samples: Callable[[list[tuple[dict, Any]]], None]) -> None:
        self._num, self._on_samples = num_images, on_samples
        self._samples: list[tuple[dict, Any]] = []

    def reset(self) -> None:
        self._samples = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            if len(self._samples) < self._num and "instances" in out:
                meta = {k: inp[k] for k in ("file_name", "image_id", "height", "width") if k in inp}
                self._samples.append((meta, out["instances"].to("cpu")))

    def evaluate(self) -> dict:
        if self._samples:
            self._on_samples(list(self._samples))
        return {}
