"""What is saved with every run so it can be reproduced: resolved config, git commit, dataset hash, env."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

import detectron2
import torch
from omegaconf import DictConfig, OmegaConf

from .. import compat
from .fileio import atomic_write_json
from .secrets import redact_tree

__all__ = ["git_state", "environment_summary", "save_run_info", "read_run_info", "record_resume", "RUN_INFO"]

RUN_INFO = "run_info.json"


def git_state(root: str) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool}`` of the repository at ``root`` (None outside git)."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD") or None
        dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else False
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, False
    return {"commit": commit, "dirty": dirty}


def environment_summary() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "detectron2": detectron2.__version__,
        "detectron2_source": compat.detectron2_source(),
        "compiled_ops": compat.has_compiled_ops(),
    }


def save_run_info(output_dir: str, cfg: DictConfig, dataset: Any, extra: dict[str, Any] | None = None) -> str:
    """Write ``run_info.json`` and ``config_resolved.yaml`` into the run dir; returns the JSON path.

    Hydra already keeps ``.hydra/{config,overrides}.yaml``; Detectron2's ``config.yaml`` is written by
    ``default_setup``. This adds what neither records. Secret values (:mod:`maskseg_d2.utils.secrets`) are
    written as ``***``, in the config and in the command line alike.

    Args:
        output_dir (str): the run dir.
        cfg (DictConfig): the composed Hydra config.
        dataset (DatasetInfo): the registered dataset (hash, classes, split sizes).
        extra (dict or None): more JSON-able items (e.g. the weights loaded, the schedule).
    """
    os.makedirs(output_dir, exist_ok=True)
    resolved = redact_tree(OmegaConf.to_container(cfg, resolve=True))  # secret values: ***
    OmegaConf.save(OmegaConf.create(resolved), os.path.join(output_dir, "config_resolved.yaml"))
    info = {
        "command": " ".join(sys.argv),
        "git": git_state(str(cfg.paths.root_dir)),
        "dataset": {
            "name": str(cfg.dataset.name),
            "hash": dataset.dataset_hash,
            "thing_classes": list(dataset.thing_classes),
            "num_train": dataset.num_train,
            "num_val": dataset.num_val,
            **({"source": dataset.source} if getattr(dataset, "source", None) else {}),  # labelstudio_api pull
        },
        "environment": environment_summary(),
        **(extra or {}),
    }
    return _write(output_dir, info)


def _write(output_dir: str, info: dict[str, Any]) -> str:
    path = os.path.join(output_dir, RUN_INFO)
    atomic_write_json(path, redact_tree(info), indent=2)
    return path


def read_run_info(run_dir: str) -> dict[str, Any]:
    """``run_info.json`` of a run dir; ``{}`` when training never got that far."""
    path = os.path.join(run_dir, RUN_INFO)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def record_resume(output_dir: str, cfg: DictConfig, entry: dict[str, Any]) -> int:
    """Append one resume to ``run_info.json``'s ``"resumes"`` and save its resolved config beside the first one.

    The first run's ``config_resolved.yaml`` and ``run_info.json`` items are kept as they were: resume ``n``
    writes ``config_resolved_resume_<n>.yaml``.

    Args:
        output_dir (str): the run dir.
        cfg (DictConfig): the composed Hydra config of this session.
        entry (dict): JSON-able facts of this resume (time, iteration, changed settings).

    Returns:
        int: ``n``, this resume's number (1 for the first).
    """
    info = read_run_info(output_dir)
    resumes = info.setdefault("resumes", [])
    n = len(resumes) + 1
    name = f"config_resolved_resume_{n}.yaml"
    resolved = redact_tree(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.save(OmegaConf.create(resolved), os.path.join(output_dir, name))
    resumes.append({**entry, "config": name, "command": " ".join(sys.argv)})
    _write(output_dir, info)
    return n
