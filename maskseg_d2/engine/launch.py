"""Multi-GPU / multi-node training through Detectron2's ``launch()`` (DDP); Gloo processes on CPU.

``trainer.num_gpus`` GPUs per machine x ``trainer.num_machines`` machines -> ``detectron2.engine.launch``
(NCCL), exactly as Detectron2's ``tools/train_net.py``. Detectron2 0.6's ``launch()`` asserts CUDA, so CPU
data-parallel runs (``trainer.cpu_processes``, used by tests and CPU clusters) start the same way with torch's
own ``multiprocessing`` + Gloo, creating Detectron2's local process group as ``launch()`` does; newer
Detectron2 releases do the same inside ``launch()``. Each worker registers the datasets itself (``train``
does), so nothing has to be pickled but the resolved config.
"""
from __future__ import annotations

import json
import os
import socket
from typing import Any

import submitit
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch
from detectron2.utils import comm
from omegaconf import DictConfig, OmegaConf

from .. import compat
from ..config import resolve_device
from ..errors import UserError
from .train import preflight, train

__all__ = ["launch_train", "world_size_of"]


def world_size_of(cfg: DictConfig) -> tuple[int, int]:
    """(processes per machine, world size) for the configured device."""
    t = cfg.trainer
    per_machine = int(t.num_gpus) if resolve_device(str(cfg.device)).startswith("cuda") else int(t.cpu_processes)
    return max(per_machine, 1), max(per_machine, 1) * int(t.num_machines)


def _worker(plain_cfg: dict) -> None:
    train(OmegaConf.create(plain_cfg))


def _gloo_worker(local_rank: int, world: int, per_machine: int, machine_rank: int, url: str, plain: dict) -> None:
    dist.init_process_group("gloo", init_method=url, world_size=world, rank=machine_rank * per_machine + local_rank)
    for i in range(world // per_machine):  # Detectron2's comm helpers need the per-machine group
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    compat.enable_cpu_ddp()
    comm.synchronize()
    _worker(plain)


def _free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _dist_url(cfg: DictConfig) -> str:
    url, machines = str(cfg.trainer.dist_url), int(cfg.trainer.num_machines)
    if url != "auto":
        return url
    if machines == 1:
        return _free_url()
    if os.environ.get("SLURM_JOB_NODELIST"):  # every node resolves the same first host under SLURM
        return f"tcp://{submitit.JobEnvironment().hostnames[0]}:{29500 + int(os.environ.get('SLURM_JOB_ID', 0)) % 1000}"
    raise UserError("trainer.dist_url=auto works on one machine or under SLURM — "
                    "give trainer.dist_url=tcp://<rank-0 host>:<port>")


def launch_train(cfg: DictConfig) -> dict[str, Any]:
    """Train in one process, or in ``world_size`` DDP processes; returns rank 0's final results.

    Args:
        cfg (DictConfig): the composed train config (with ``trainer.*``).
    """
    per_machine, world = world_size_of(cfg)
    if world == 1:
        return train(cfg)
    preflight(cfg)  # bad data / full disk / offline weights: one line here, not a traceback per worker
    plain = OmegaConf.to_container(cfg, resolve=True)  # resolves ${hydra:...} here, where Hydra is set up
    t = cfg.trainer
    if resolve_device(str(cfg.device)).startswith("cuda"):
        launch(_worker, per_machine, int(t.num_machines), int(t.machine_rank), _dist_url(cfg), args=(plain,))
    else:
        url = _dist_url(cfg)
        mp.start_processes(_gloo_worker, nprocs=per_machine, start_method="spawn",
                           args=(world, per_machine, int(t.machine_rank), url, plain))
    path = os.path.join(str(plain["paths"]["output_dir"]), "eval", "results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)
