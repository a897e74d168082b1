"""SafeCheckpointer: atomic saves (a process killed mid-save leaves every named file complete), resume past a
missing/truncated checkpoint, weights_only loading (a malicious .pth never runs), .pkl warnings, disk full.

Real torch/Detectron2/fvcore objects on a small module; the kill test SIGKILLs a real child process while it
is writing a checkpoint."""
import errno
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.engine import hooks
from detectron2.solver import build_lr_scheduler
from torch import nn

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.engine.checkpoint import (TRUST_ENV, SafeCheckpointer, checkpoint_files, has_finite_weights,
                                          load_checkpoint_file)
from maskseg_d2.engine.hooks import BestCheckpointer
from maskseg_d2.engine.trainer import Trainer
from maskseg_d2.errors import UserError
from maskseg_d2.utils.preflight import write_error

LOGGER = "maskseg_d2.engine.checkpoint"


class Net(nn.Module):
    def __init__(self, value: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        nn.init.constant_(self.conv.weight, value)


class Counter:
    """A checkpointable like Detectron2's trainer: ``{"iteration": n}``."""

    def __init__(self, iteration: int = 0):
        self.iteration = iteration

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, state):
        self.iteration = state["iteration"]


def _saved(folder, *iterations, name="model_{:07d}"):
    """Checkpoints with conv weights = iteration, written by SafeCheckpointer; returns it."""
    net, counter = Net(), Counter()
    ckpt = SafeCheckpointer(net, str(folder), counter=counter)
    for it in iterations:
        nn.init.constant_(net.conv.weight, float(it))
        counter.iteration = it
        ckpt.save(name.format(it))
    return ckpt


def _resumed(folder) -> tuple[SafeCheckpointer, Counter, Net]:
    net, counter = Net(), Counter()
    ckpt = SafeCheckpointer(net, str(folder), counter=counter)
    ckpt.resume_or_load("", resume=True)
    return ckpt, counter, net


def _tmp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------ atomic saves
def test_save_writes_file_then_pointer_and_leaves_no_temp_files(tmp_path):
    _saved(tmp_path, 1, 3)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth", "model_0000003.pth"]
    umask = os.umask(0)
    os.umask(umask)
    for p in tmp_path.iterdir():  # readable by others like a plain open() would make them (not mkstemp's 0600)
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
    state = load_checkpoint_file(str(tmp_path / "model_0000003.pth"))
    assert state["counter"] == {"iteration": 3} and float(state["model"]["conv.weight"].mean()) == 3.0
    ckpt, counter, net = _resumed(tmp_path)
    assert counter.iteration == 3 and ckpt.resumed_from == str(tmp_path / "model_0000003.pth")


def test_a_save_failing_mid_write_keeps_the_previous_file_and_pointer(tmp_path):
    class Interrupt:
        def __reduce__(self):
            raise KeyboardInterrupt  # Ctrl-C while torch.save is writing

    ckpt = _saved(tmp_path, 2, name="model_best")
    before = (tmp_path / "model_best.pth").read_bytes()
    ckpt.add_checkpointable("broken", type("Broken", (), {"state_dict": lambda self: {"x": Interrupt()}})())
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_best")  # overwriting: a plain open("wb") would have destroyed the old best already
    assert (tmp_path / "model_best.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_best.pth" and _tmp_files(tmp_path) == []


def test_disk_full_keeps_the_previous_checkpoint_and_names_the_file(tmp_path):
    class DiskFull:
        def __reduce__(self):
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises

    ckpt = _saved(tmp_path, 1)
    ckpt.add_checkpointable("big", type("Big", (), {"state_dict": lambda self: {"x": DiskFull()}})())
    with pytest.raises(OSError) as info:
        ckpt.save("model_0000002")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "model_0000002.pth")
    assert not (tmp_path / "model_0000002.pth").exists() and _tmp_files(tmp_path) == []
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    msg = str(write_error(info.value, str(tmp_path)))  # what train() prints (its disk_errors block)
    assert msg.startswith(f"{tmp_path / 'model_0000002.pth'}: disk full")
    assert msg.endswith(f"then continue the run: resume={tmp_path}")


KILLED_WRITER = textwrap.dedent("""
    import sys, torch
    from torch import nn
    import maskseg_d2
    from maskseg_d2.engine.checkpoint import SafeCheckpointer

    class Counter:
        iteration = 0
        def state_dict(self): return {"iteration": self.iteration}
        def load_state_dict(self, s): self.iteration = s["iteration"]

    net, counter = nn.Linear(2048, 4096), Counter()  # 32 MB: each save takes a while
    ckpt = SafeCheckpointer(net, sys.argv[1], counter=counter)
    while True:
        counter.iteration += 1
        nn.init.constant_(net.weight, float(counter.iteration))
        ckpt.save("model_best")  # overwritten in place, like BestCheckpointer does
        ckpt.save(f"model_{counter.iteration:07d}")
""")


def _killed_mid_save(tmp_path):
    """Run KILLED_WRITER and SIGKILL it while a temp file is open; the run dir (a new try if the save won the race)."""
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    for attempt in range(5):
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        proc = subprocess.Popen([sys.executable, str(script), str(run)])
        try:
            deadline = time.monotonic() + 60
            while not ((run / "model_0000002.pth").exists() and _tmp_files(run)):  # a 5th+ save is in flight
                assert proc.poll() is None and time.monotonic() < deadline, "the writer died or never saved"
                time.sleep(0.001)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        if _tmp_files(run):  # else the rename happened between our look and the kill: try again
            return run
    pytest.fail("the writer was never killed in the middle of a save")


def test_sigkill_during_a_save_leaves_complete_files_and_resume_ignores_the_temp(tmp_path):
    run = _killed_mid_save(tmp_path)
    best = load_checkpoint_file(str(run / "model_best.pth"))  # overwritten in place: old or new, never torn
    assert float(best["model"]["weight"][0, 0]) == best["counter"]["iteration"]
    for path in checkpoint_files(str(run)):
        assert load_checkpoint_file(path)["counter"]["iteration"] >= 1  # every named file is complete

    named = (run / "last_checkpoint").read_text()
    net, counter = nn.Linear(2048, 4096), Counter()
    ckpt = SafeCheckpointer(net, str(run), counter=counter)
    ckpt.resume_or_load("", resume=True)
    assert ckpt.resumed_from == str(run / named) and float(net.weight[0, 0].detach()) == counter.iteration >= 2
    assert _tmp_files(run) == []  # the unfinished temp file is removed on resume, never read


def test_a_temp_file_of_an_interrupted_save_is_never_picked_up(tmp_path):
    _saved(tmp_path, 1, 2)
    good = (tmp_path / "model_0000002.pth").read_bytes()
    (tmp_path / ".model_0000003.pth.k2j4h1.tmp").write_bytes(good[: len(good) // 2])  # killed before os.replace
    (tmp_path / ".last_checkpoint.a8d9q.tmp").write_bytes(b"model_0000003.pth")
    ckpt, counter, _ = _resumed(tmp_path)
    assert counter.iteration == 2 and ckpt.resumed_from.endswith("model_0000002.pth")
    assert _tmp_files(tmp_path) == []


# -------------------------------------------------------------------------------------- resume fallback
def test_truncated_checkpoint_named_by_last_checkpoint_falls_back_with_one_warning(tmp_path, caplog):
    _saved(tmp_path, 1, 2, 3)
    path = tmp_path / "model_0000003.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short: a copy, an older non-atomic save
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ckpt, counter, net = _resumed(tmp_path)
    assert counter.iteration == 2 and float(net.conv.weight.detach().mean()) == 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("resume: last_checkpoint names model_0000003.pth, which is unreadable (")
    assert warnings[0].endswith("resuming from the newest readable checkpoint model_0000002.pth instead")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"  # points at a readable file again


def test_missing_checkpoint_falls_back_and_missing_pointer_still_resumes(tmp_path, caplog):
    _saved(tmp_path, 1, 2)
    (tmp_path / "model_0000002.pth").unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _resumed(tmp_path)[1].iteration == 1
    assert "model_0000002.pth, which is missing" in caplog.text
    (tmp_path / "last_checkpoint").unlink()  # killed between the first checkpoint and its pointer
    ckpt = SafeCheckpointer(Net(), str(tmp_path))
    assert ckpt.has_checkpoint() and ckpt.resume_checkpoint() == str(tmp_path / "model_0000001.pth")


def test_no_readable_checkpoint_is_one_line_user_error(tmp_path):
    _saved(tmp_path, 1, 2)
    for p in checkpoint_files(str(tmp_path)):
        open(p, "r+b").truncate(100)
    with pytest.raises(UserError) as info:
        _resumed(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'last_checkpoint'}: no checkpoint to resume from (last_checkpoint names "
                          f"model_0000002.pth, which is unreadable (")
    assert "no other model_*.pth" in msg and "leave resume out" in msg
    assert not SafeCheckpointer(Net(), str(tmp_path / "empty")).has_checkpoint()


def test_last_finite_checkpoint_never_leaves_a_nan_checkpoint_as_last(tmp_path):
    ckpt = _saved(tmp_path, 1, 2)
    with torch.no_grad():
        ckpt.model.conv.weight[0, 0, 0, 0] = float("nan")  # a step broke the weights, the loss was still finite
    ckpt.save("model_0000003")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not has_finite_weights(str(tmp_path / "model_0000003.pth"))
    assert ckpt.last_finite_checkpoint() == str(tmp_path / "model_0000002.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    for p in ("model_0000001.pth", "model_0000002.pth"):
        (tmp_path / p).unlink()
    assert ckpt.last_finite_checkpoint() is None and not (tmp_path / "last_checkpoint").exists()


# ------------------------------------------------------------------------------------- untrusted files
class RunsCode:
    """Unpickling this calls exec(): what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _malicious(tmp_path):
    path, marker = tmp_path / "model_final.pth", tmp_path / "pwned"
    torch.save({"model": Net().state_dict(), "extra": RunsCode(marker)}, path)
    return path, marker


def test_malicious_pth_does_not_run_and_is_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path, marker = _malicious(tmp_path)
    for load in (lambda: SafeCheckpointer(Net()).load(str(path)), lambda: load_checkpoint_file(str(path))):
        with pytest.raises(UserError) as info:
            load()
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(f"{path}: not loaded: it holds pickled Python objects besides "
                                                   f"tensors (exec), which run code when loaded — ")
        assert msg.endswith(f"run with {TRUST_ENV}=1")
        assert not marker.exists()
    (tmp_path / "last_checkpoint").write_text(path.name)  # in a run dir: resume refuses it too, no fallback
    with pytest.raises(UserError, match="not loaded: it holds pickled Python objects"):
        _resumed(tmp_path)
    assert not marker.exists() and not has_finite_weights(str(path))


def test_trusted_opt_in_loads_pickled_objects_with_a_warning(tmp_path, monkeypatch, caplog):
    path, marker = _malicious(tmp_path)
    monkeypatch.setenv(TRUST_ENV, "1")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        SafeCheckpointer(Net()).load(str(path))
    assert marker.exists()  # the user opted in: the file ran its code
    assert f"{TRUST_ENV}=1: loading {path} in full" in caplog.text


def test_full_training_checkpoint_loads_with_weights_only(tmp_path):
    """Model + SGD momentum + Detectron2's warm-up/step LR scheduler + AMP grad scaler + iteration."""
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 10, (5,), 2
    sched = build_lr_scheduler(cfg, opt)
    net.conv(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    sched.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer = {"iteration": 7, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "grad_scaler": scaler.state_dict()}
    holder = type("Holder", (), {"state_dict": lambda self: trainer, "load_state_dict": lambda self, s: None})()
    SafeCheckpointer(net, str(tmp_path), trainer=holder).save("model_0000007")
    state = torch.load(tmp_path / "model_0000007.pth", map_location="cpu", weights_only=True)
    assert state["trainer"]["iteration"] == 7 and state["trainer"]["grad_scaler"]["scale"] == 1024.0
    assert state["trainer"]["optimizer"]["state"] and state["trainer"]["scheduler"]["last_epoch"] == 1
    again = Net()
    SafeCheckpointer(again).load(str(tmp_path / "model_0000007.pth"))
    assert torch.equal(again.conv.weight, net.conv.weight)


def test_local_pkl_warns_once_and_model_zoo_pkl_does_not(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))  # iopath's download cache
    weights = {"model": {k: v.numpy() for k, v in Net(1.0).state_dict().items()}, "__author__": "test"}
    local = tmp_path / "weights.pkl"
    zoo = tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    zoo.parent.mkdir(parents=True)
    for p in (local, zoo):
        p.write_bytes(pickle.dumps(weights))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(2):
            net = Net()
            SafeCheckpointer(net).load(str(local))
            assert float(net.conv.weight.detach().mean()) == 1.0
        SafeCheckpointer(Net()).load(str(zoo))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{local}: .pkl files are loaded with pickle, which can run")


def test_not_a_checkpoint_dict_is_one_line(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(UserError, match=r"tensor.pth: holds a Tensor, not a checkpoint dict — "):
        SafeCheckpointer(Net()).load(str(path))


# ------------------------------------------------------------------------------------------- Trainer
def test_trainer_hooks_save_through_the_safe_checkpointer(train_cfg, tmp_path):
    cfg = train_cfg(tmp_path / "run", "logger=none")
    trainer = Trainer(build_d2_cfg(cfg, register_dataset(cfg.dataset), str(tmp_path / "run")), hydra_cfg=cfg)
    assert isinstance(trainer.checkpointer, SafeCheckpointer)
    assert set(trainer.checkpointer.checkpointables) == {"trainer"}
    assert trainer.checkpointer.save_dir == str(tmp_path / "run")
    periodic = [h for h in trainer._hooks if isinstance(h, hooks.PeriodicCheckpointer)]
    best = [h for h in trainer._hooks if isinstance(h, BestCheckpointer)]
    assert len(periodic) == 1 and periodic[0].checkpointer is trainer.checkpointer
    assert len(best) == 1 and best[0]._checkpointer is trainer.checkpointer
