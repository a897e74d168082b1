"""``python tests/helpers/ddp_probe.py <tools/train.py overrides>``: tools/train.py with a probe in every
training process. Each rank writes ``<run dir>/probe_rank<r>.json``: its rank, the world size it saw and a
digest of the model's parameters before and after training.

How the probe reaches the DDP workers without test code in the library: CPU workers are started with
``spawn`` (maskseg_d2.engine.launch), and a spawned child imports the parent's main module (this file) as
``__mp_main__`` before it runs the worker, so the ``Trainer.train`` wrapper below is installed in every rank.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import torch
from detectron2.utils import comm

from maskseg_d2.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
_train = Trainer.train


def param_digest(params: dict[str, torch.Tensor]) -> str:
    """sha256 over ``{name: tensor}`` (sorted names, exact bytes): equal digests = bitwise-equal weights."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(params[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    model = getattr(trainer.model, "module", trainer.model)  # unwrap DistributedDataParallel
    return dict(model.named_parameters())


def _probed_train(self: Trainer):
    before = param_digest(_params(self))
    out = _train(self)
    params = _params(self)
    probe = {"rank": comm.get_rank(), "world_size": comm.get_world_size(), "pid": os.getpid(),
             "ddp": type(self.model).__name__, "iter": self.iter, "before": before,
             "after": param_digest(params), "params": sorted(params)}
    with open(os.path.join(self.cfg.OUTPUT_DIR, f"probe_rank{comm.get_rank()}.json"), "w") as f:
        json.dump(probe, f)
    return out


Trainer.train = _probed_train

if __name__ == "__main__":
    # Load tools/train.py without putting it in sys.modules: this file stays the main module that the workers
    # import. Named "__main__" so that @hydra.main finds ../configs next to tools/train.py, as when it is run.
    spec = importlib.util.spec_from_file_location("__main__", ROOT / "tools" / "train.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main()
