"""One tiny real training shared by the engine tests (CPU, 4 iterations on the 16-image demo set).

It exercises what the Trainer adds: strong augmentation (crop, colour, JPEG), periodic evaluation (every 2
iterations), validation loss, best checkpoint, W&B in offline mode (its files in the run dir), curves.png.
Later tests resume it or read it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")

# Tiny and fast: 2 images/iter at ~200 px, no loader workers; score threshold 0 so that 4 iterations
# already give predictions (AP is a number, the W&B images have masks), at most 20 per image.
TINY = ["experiment=demo", "device=cpu", "solver.ims_per_batch=2", "solver.warmup_iters=2",
        "d2.DATALOADER.NUM_WORKERS=0", "d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0", "d2.TEST.DETECTIONS_PER_IMAGE=20"]


def compose_train_cfg(demo_root: Path, run_dir: Path, *overrides: str):
    """The train config as tools/train.py would see it, with Hydra's run dir = ``run_dir``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"dataset.root={demo_root}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


@pytest.fixture(scope="session")
def train_cfg(demo_root):
    """``train_cfg(run_dir, *overrides)`` -> the tiny train config on the demo data."""
    return lambda run_dir, *overrides: compose_train_cfg(demo_root, run_dir, *overrides)


@pytest.fixture(scope="session")
def tiny_run(demo_root, tmp_path_factory):
    """``(run_dir, results)`` of a 4-iteration run: evals at iterations 1 and 4, W&B offline in the run dir."""
    from maskseg_d2.engine import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_train_cfg(demo_root, run_dir, "solver.max_iter=4", "solver.eval_period=2",
                            "solver.checkpoint_period=2", "num_vis=2", "augment=strong", "logger=wandb",
                            "logger.num_images=2", "logger.score_threshold=0.0")
    wb = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")  # never online from a test, even on a logged-in machine
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("WANDB_DIR", str(run_dir))
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            mp.setenv(var, str(wb / var.lower()))
        results = train(cfg)
    return run_dir, results


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The TINY overrides, for tests that start tools/train.py in a subprocess."""
    return list(TINY)
