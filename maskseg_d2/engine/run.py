"""Re-open a finished run directory: its configs, its dataset registration and a checkpoint."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detectron2.config import CfgNode, get_cfg

from ..config import resolve_device
from ..data import register_dataset
from ..errors import UserError

__all__ = ["RunArtifacts", "load_run"]


@dataclass
class RunArtifacts:
    run_dir: str
    cfg: DictConfig      # the resolved Hydra config of the run
    d2cfg: CfgNode       # its Detectron2 config, MODEL.WEIGHTS pointing at the chosen checkpoint
    dataset: Any         # DatasetInfo (re-registered)


def load_run(run_dir: str, checkpoint: str = "model_final.pth", device: str = "auto") -> RunArtifacts:
    """Load ``<run_dir>/config_resolved.yaml`` + ``config.yaml`` and point the model at ``checkpoint``.

    Args:
        run_dir (str): a directory written by ``tools/train.py``.
        checkpoint (str): file name inside the run dir, or a path.
        device (str): auto | cpu | cuda.
    """
    if not run_dir or not os.path.isdir(run_dir):
        raise UserError(f"run={run_dir}: not a directory — pass a run dir printed by tools/train.py "
                        f"(e.g. run=outputs/demo/runs/<time>_demo_r18_fpn_scratch)")
    hydra_yaml, d2_yaml = (os.path.join(run_dir, n) for n in ("config_resolved.yaml", "config.yaml"))
    for path in (hydra_yaml, d2_yaml):
        if not os.path.isfile(path):
            raise UserError(
                f"{path}: missing — {run_dir} is not a complete maskseg-d2 run dir (was training interrupted?)")
    weights = checkpoint if os.path.isfile(checkpoint) else os.path.join(run_dir, checkpoint)
    if not os.path.isfile(weights):
        have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pth"))
        raise UserError(f"{weights}: checkpoint not found — available in {run_dir}: {', '.join(have) or 'none'}")
    cfg = OmegaConf.load(hydra_yaml)
    dataset = register_dataset(cfg.dataset)
    d2cfg = get_cfg()
    d2cfg.set_new_allowed(True)  # tolerate keys added by a newer/older maskseg-d2
    d2cfg.merge_from_file(d2_yaml)
    d2cfg.MODEL.WEIGHTS = weights
    d2cfg.MODEL.DEVICE = resolve_device(device)
    d2cfg.DATALOADER.NUM_WORKERS = 0
    d2cfg.freeze()
    return RunArtifacts(run_dir=run_dir, cfg=cfg, d2cfg=d2cfg, dataset=dataset)
