"""solver.cpu_amp: CPU training steps under bf16 autocast with channels-last weights; fp32 weights and evaluation."""
from types import SimpleNamespace

import pytest
import torch

from detectron2.utils.events import EventStorage
from maskseg_d2 import config as config_mod
from maskseg_d2.config import build_d2_cfg, resolve_cpu_amp
from maskseg_d2.data import register_dataset
from maskseg_d2.engine.trainer import Trainer
from maskseg_d2.errors import UserError

DATA = SimpleNamespace(train_name="x_train", val_name="x_val", thing_classes=["car"], mask_format="bitmask",
                       num_train=10)  # build_d2_cfg needs no registered data to check the solver keys


@pytest.mark.parametrize("value, native, expected", [
    ("true", False, True), ("false", True, False), ("auto", True, True), ("auto", False, False), (False, True, False),
])
def test_cpu_amp_values(monkeypatch, value, native, expected):
    monkeypatch.setattr(config_mod, "native_cpu_bf16", lambda: native)
    assert resolve_cpu_amp(value, "cpu") is expected
    assert resolve_cpu_amp(value, "cuda") is False  # CUDA has its own AMP (solver.amp)


@pytest.mark.parametrize("amx, avx512_bf16, expected",
                         [(True, False, True), (False, True, True), (False, False, False)])
def test_native_cpu_bf16_asks_torch_for_amx_or_avx512_bf16(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert config_mod.native_cpu_bf16() is expected


def test_raw_cpu_bf16_key_is_refused(compose_cfg):
    with pytest.raises(UserError, match=r"^d2.MASKSEG.CPU_BF16 is set from solver.cpu_amp — remove it and set "):
        build_d2_cfg(compose_cfg("d2.MASKSEG.CPU_BF16=true", "device=cpu"), DATA, "o")


def test_bad_cpu_amp_is_one_line(compose_cfg):
    with pytest.raises(UserError, match=r"^solver.cpu_amp=fast: use auto \(bf16 where the CPU has bf16 units\)"):
        build_d2_cfg(compose_cfg("solver.cpu_amp=fast", "device=cpu"), DATA, "o")


def _trainer(train_cfg, run_dir, *overrides):
    cfg = train_cfg(run_dir, "logger=none", "num_vis=0", *overrides)
    return Trainer(build_d2_cfg(cfg, register_dataset(cfg.dataset), str(run_dir)), hydra_cfg=cfg)


def _conv_output_dtypes(trainer) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    trainer.model.backbone.bottom_up.stem.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with EventStorage(0) as trainer.storage:
        trainer.iter = 0
        trainer.run_step()
    return seen


@pytest.mark.parametrize("cpu_amp, dtype", [("true", torch.bfloat16), ("false", torch.float32)])
def test_training_step_runs_in_bf16_and_keeps_fp32_weights(train_cfg, tmp_path, cpu_amp, dtype):
    trainer = _trainer(train_cfg, tmp_path / "run", f"solver.cpu_amp={cpu_amp}")
    assert trainer.cfg.MASKSEG.CPU_BF16 is (cpu_amp == "true")
    conv = trainer.model.backbone.bottom_up.stem.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) is (cpu_amp == "true")
    before = conv.detach().clone()
    assert _conv_output_dtypes(trainer) == [dtype]
    params = list(trainer.model.parameters())
    assert all(p.dtype == torch.float32 for p in params)  # autocast casts per op; the weights stay fp32
    assert not torch.equal(before, conv.detach())  # and the step updated them
    trainer.model.eval()
    with torch.inference_mode():  # evaluation (outside run_step) is plain fp32
        seen = []
        trainer.model.backbone.bottom_up.stem.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        trainer.model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8)}])
    assert seen == [torch.float32]
