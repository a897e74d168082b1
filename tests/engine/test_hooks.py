"""The Trainer's hooks on Detectron2's real SimpleTrainer + EvalHook with a tiny model and scripted metrics
(deterministic, milliseconds): best checkpoint, early stopping, writes after evaluations, validation loss."""
import itertools
import json

import pytest
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import SimpleTrainer, hooks
from detectron2.utils.events import EventWriter, get_event_storage

from maskseg_d2.engine.hooks import (BestCheckpointer, EarlyStop, EarlyStopping, PeriodicWriter, ValidationLoss,
                                     preserved_rng, training_mode_frozen_norms)


class Tiny(nn.Module):
    """Returns a loss dict in training mode, like Detectron2 models; has BatchNorm."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, batch):
        x = torch.stack([b["x"] for b in batch])
        return {"loss_a": (self.w * self.bn(x)).pow(2).mean(), "loss_b": self.w.abs().sum()}


def _batches():
    g = torch.Generator().manual_seed(0)
    return itertools.repeat([{"x": torch.randn(1, generator=g)}, {"x": torch.randn(1, generator=g) + 1}])


def _trainer(tmp_path, metric_values, period, extra):
    """SimpleTrainer + PeriodicCheckpointer + EvalHook returning the scripted ``segm/AP`` values + ``extra``."""
    model = Tiny()
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.01))
    values = iter(metric_values)
    checkpointer = DetectionCheckpointer(model, str(tmp_path), trainer=trainer)
    trainer.register_hooks([
        hooks.PeriodicCheckpointer(checkpointer, period or 100),
        hooks.EvalHook(period, lambda: {"segm": {"AP": next(values)}}),
        *extra(checkpointer),
    ])
    return trainer


def test_best_checkpointer_keeps_the_best_and_records_it(tmp_path):
    # evaluations after iterations 1, 3, 5 and the final one (8): AP 1, 3, 2, NaN
    trainer = _trainer(tmp_path, [1.0, 3.0, 2.0, float("nan")], 2,
                       lambda c: [BestCheckpointer(2, c, "segm/AP")])
    trainer.train(0, 8)
    best = json.loads((tmp_path / "best_metric.json").read_text())
    assert best == {"metric": "segm/AP", "mode": "max", "value": 3.0, "iteration": 3, "checkpoint": "model_best.pth"}
    assert torch.load(tmp_path / "model_best.pth", weights_only=False)["trainer"]["iteration"] == 3
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"  # resume never starts from model_best


def test_best_checkpointer_state_survives_resume_for_the_same_metric(tmp_path):
    hook = BestCheckpointer(2, DetectionCheckpointer(Tiny(), str(tmp_path)), "val/total_loss", mode="min")
    hook.best_metric, hook.best_iter = 0.5, 10
    again = BestCheckpointer(2, DetectionCheckpointer(Tiny(), str(tmp_path)), "val/total_loss", mode="min")
    again.load_state_dict(hook.state_dict())
    assert (again.best_metric, again.best_iter) == (0.5, 10)
    other = BestCheckpointer(2, DetectionCheckpointer(Tiny(), str(tmp_path)), "segm/AP")
    other.load_state_dict(hook.state_dict())  # another metric: its record starts afresh
    assert other.best_metric is None


def test_best_checkpointer_without_periodic_eval_points_at_final(tmp_path):
    trainer = _trainer(tmp_path, [7.0], 0, lambda c: [BestCheckpointer(0, c, "segm/AP")])
    trainer.train(0, 3)
    best = json.loads((tmp_path / "best_metric.json").read_text())
    assert (best["value"], best["checkpoint"]) == (7.0, "model_final.pth")
    assert not (tmp_path / "model_best.pth").exists()  # one evaluation: no second copy of the weights


@pytest.mark.parametrize("values, min_delta, stop_iter", [
    ([1.0, 2.0, 2.0, 1.5, 5.0, 5.0], 0.0, 3),           # best 2 at iter 1; two evaluations without gain
    ([1.0, float("nan"), 0.5, 9.0, 9.0, 9.0], 0.0, 2),  # NaN counts as no improvement
    ([1.0, 1.05, 1.09, 9.0, 9.0, 9.0], 0.1, 2),         # +0.05/+0.09 is not more than min_delta
])
def test_early_stopping_after_patience_evaluations(tmp_path, values, min_delta, stop_iter):
    stopper = EarlyStopping(1, "segm/AP", patience=2, min_delta=min_delta)
    trainer = _trainer(tmp_path, values, 1, lambda c: [stopper])
    with pytest.raises(EarlyStop, match="segm/AP did not improve"):
        trainer.train(0, 20)
    assert trainer.iter == stop_iter and stopper.bad_evals == 2


def test_early_stopping_mode_min_and_state(tmp_path):
    stopper = EarlyStopping(1, "segm/AP", patience=1, mode="min")
    trainer = _trainer(tmp_path, [3.0, 2.0, 1.0, 1.0], 1, lambda c: [stopper])
    with pytest.raises(EarlyStop):
        trainer.train(0, 20)
    assert trainer.iter == 3 and stopper.best == 1.0
    fresh = EarlyStopping(1, "segm/AP", patience=1, mode="min")
    fresh.load_state_dict(stopper.state_dict())
    assert (fresh.best, fresh.bad_evals) == (1.0, 1)


class Recorder(EventWriter):
    def __init__(self):
        self.seen = []

    def write(self):
        storage = get_event_storage()
        self.seen.append((storage.iter, "segm/AP" in storage.latest() and storage.latest()["segm/AP"][1]))


def test_writers_run_right_after_each_periodic_evaluation(tmp_path):
    recorder = Recorder()
    trainer = _trainer(tmp_path, [1.0, 2.0, 3.0, 4.0], 3, lambda c: [PeriodicWriter([recorder], 20, eval_period=3)])
    trainer.train(0, 10)
    # evaluations after iterations 2, 5, 8 are written at once; then the last iteration and after_train
    assert recorder.seen[:3] == [(2, 2), (5, 5), (8, 8)] and recorder.seen[3][0] == 9


def test_validation_loss_is_mean_and_leaves_bn_and_rng_alone():
    model = Tiny()
    batches = [[{"x": torch.tensor([2.0])}], [{"x": torch.tensor([4.0])}, {"x": torch.tensor([6.0])}]]
    hook = ValidationLoss(1, lambda: batches)
    trainer = SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.register_hooks([hook])
    stats = model.bn.running_mean.clone(), model.bn.running_var.clone()
    rng = torch.get_rng_state()
    losses = hook.compute()
    assert torch.equal(model.bn.running_mean, stats[0]) and torch.equal(model.bn.running_var, stats[1])
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    # BN in eval mode with fresh statistics (mean 0, var 1): loss_a = x^2 per image; mean over the 3 images
    assert losses["val/loss_a"] == pytest.approx((4 + 16 + 36) / 3, rel=1e-4)
    assert losses["val/loss_b"] == pytest.approx(1.0)
    assert losses["val/total_loss"] == pytest.approx(losses["val/loss_a"] + losses["val/loss_b"])


def test_training_mode_frozen_norms_and_preserved_rng():
    model = Tiny().eval()
    with training_mode_frozen_norms(model):
        assert model.training and not model.bn.training
    assert not model.training
    torch.manual_seed(1)
    expected = torch.rand(1).item()
    torch.manual_seed(1)
    with preserved_rng():
        torch.rand(3)
    assert torch.rand(1).item() == expected
