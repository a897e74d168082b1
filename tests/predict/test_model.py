"""Inference-only model rewrites keep the outputs: BatchNorm folded into convolutions."""

from __future__ import annotations

import torch

from detectron2.layers import Conv2d, FrozenBatchNorm2d
from maskseg_d2.predict.model import fold_batchnorm


def _stats(bn) -> None:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.2, 3.0)


def test_fold_batchnorm_keeps_outputs():
    torch.manual_seed(0)
    bn, frozen = torch.nn.BatchNorm2d(8), FrozenBatchNorm2d(8)
    _stats(bn)
    _stats(frozen)
    model = torch.nn.Sequential(
        Conv2d(3, 8, 3, padding=1, bias=False, norm=bn, activation=torch.relu),
        Conv2d(8, 8, 3, padding=1, bias=True, norm=frozen),
        Conv2d(8, 4, 1, norm=torch.nn.GroupNorm(2, 4)),  # not a BatchNorm: left alone
    ).eval()
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 2
        after = model(x)
    assert model[0].norm is None and model[1].norm is None and isinstance(model[2].norm, torch.nn.GroupNorm)
    assert torch.allclose(before, after, atol=1e-5)
