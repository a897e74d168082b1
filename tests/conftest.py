"""Shared fixtures: Hydra-composed configs and a small generated demo dataset (in tmp dirs, never datasets/)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# Importing maskseg_d2 (any module of it) patches Detectron2 before a test module imports it.
from maskseg_d2.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A 16-image demo dataset (both annotation formats), generated once per session."""
    root = tmp_path_factory.mktemp("datasets") / "demo"
    make_demo_dataset(root, num_images=16, seed=1)
    return root


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(*overrides)`` -> the train config as tools/train.py would see it, run dir in tmp_path."""
    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")  # Hydra's run dir when launched by @hydra.main
        return cfg

    return _compose
