"""Project paths and the ``${maskseg_root:}`` resolver used by ``configs/paths/default.yaml``."""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["project_root", "register_resolvers"]


def project_root() -> str:
    """The repository root: ``$MASKSEG_ROOT``, else the folder holding ``configs/`` above this package, else cwd."""
    env = os.environ.get("MASKSEG_ROOT")
    if env:
        return env
    here = Path(__file__).resolve().parents[2]
    return str(here if (here / "configs").is_dir() else Path.cwd())


def register_resolvers() -> None:
    """Idempotent (Hydra multirun and tests import us many times)."""
    if not OmegaConf.has_resolver("maskseg_root"):
        OmegaConf.register_new_resolver("maskseg_root", project_root)
