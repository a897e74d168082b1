"""Shared fixtures: Hydra-composed configs, a small generated demo dataset and one tiny trained run (in tmp dirs,
never datasets/ or outputs/)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# Importing maskseg_d2 (any module of it) patches Detectron2 before a test module imports it.
from maskseg_d2.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]

# Tiny and fast: 2 images/iter at ~200 px, no loader workers; score threshold 0 so that 4 iterations
# already give predictions (AP is a number, the W&B images have masks), at most 20 per image.
# fp32 (solver.cpu_amp=false): the same numbers on every CPU, bf16 units or not; tests/engine/test_cpu_amp.py
# covers the bf16 step experiment=demo takes where the CPU has them.
TINY = ["experiment=demo", "device=cpu", "solver.cpu_amp=false", "solver.ims_per_batch=2", "solver.warmup_iters=2",
        "d2.DATALOADER.NUM_WORKERS=0", "d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0", "d2.TEST.DETECTIONS_PER_IMAGE=20"]

# The shared run: 4 iterations, evaluations at iterations 1 and 4 (eval_period 2) with validation loss and
# 2 W&B images each, checkpoints after iterations 1 and 3, best checkpoint, strong augmentation, 2 vis images.
TINY_RUN = ["solver.max_iter=4", "solver.eval_period=2", "solver.checkpoint_period=2", "num_vis=2", "augment=strong",
            "logger=wandb", "logger.num_images=2", "logger.score_threshold=0.0"]


def compose_train(output_dir: Path, *overrides: str):
    """The train config as tools/train.py would see it, with Hydra's run dir = ``output_dir``."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)  # Hydra's run dir when launched by @hydra.main
    return cfg


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A 16-image demo dataset (both annotation formats), generated once per session."""
    root = tmp_path_factory.mktemp("datasets") / "demo"
    make_demo_dataset(root, num_images=16, seed=1)
    return root


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(*overrides)`` -> the train config as tools/train.py would see it, run dir in tmp_path."""
    return lambda *overrides: compose_train(tmp_path / "run", *overrides)


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The TINY overrides, for tests that start tools/train.py in a subprocess."""
    return list(TINY)


@pytest.fixture(scope="session")
def train_cfg(demo_root):
    """``train_cfg(run_dir, *overrides)`` -> the TINY train config on the demo data, run dir ``run_dir``."""
    return lambda run_dir, *overrides: compose_train(run_dir, *TINY, f"dataset.root={demo_root}", *overrides)


@pytest.fixture(scope="session")
def train_tiny(train_cfg, tmp_path_factory):
    """``train_tiny(*overrides)`` -> ``(run_dir, results)`` of a TINY training on CPU, trained once per session
    for each set of overrides (tests read the run dir; one that changes it copies it first).

    W&B (``logger=wandb``) runs offline with its files in the run dir, never online from a test, even on a
    logged-in machine.
    """
    from maskseg_d2.engine import train  # heavy (matplotlib, the Detectron2 engine): only sessions that train

    runs: dict[tuple[str, ...], tuple[Path, dict]] = {}

    def _train(*overrides: str) -> tuple[Path, dict]:
        if overrides not in runs:
            run_dir = tmp_path_factory.mktemp("run")
            wb = tmp_path_factory.mktemp("wandb_home")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("WANDB_MODE", "offline")
                mp.delenv("WANDB_API_KEY", raising=False)
                mp.setenv("WANDB_DIR", str(run_dir))
                for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
                    mp.setenv(var, str(wb / var.lower()))
                runs[overrides] = run_dir, train(train_cfg(run_dir, *overrides))
        return runs[overrides]

    return _train


@pytest.fixture(scope="session")
def tiny_run(train_tiny) -> tuple[Path, dict]:
    """``(run_dir, results)`` of the shared TINY_RUN: what engine, evaluation and prediction tests read."""
    return train_tiny(*TINY_RUN)


@pytest.fixture(scope="session")
def predict_run(tiny_run) -> Path:
    """The shared run's directory (its scores are tiny: prediction tests use ``score_threshold=0`` and a cap
    on detections and check consistency between outputs, not accuracy)."""
    return tiny_run[0]


# A model that learns (tests/engine/test_learning.py), on top of TINY: train AND evaluate on the first 4 training
# images of the demo data (10 instances, both classes), one scale, no flip, 100 iterations of 2 images at lr 0.01
# after 20 warm-up iterations, seeded; evaluated once at the end, no masked images.
OVERFIT = ["debug=overfit", "overfit_images=4", "seed=42", "solver.max_iter=100", "solver.ims_per_batch=2",
           "solver.base_lr=0.01", "solver.warmup_iters=20", "augment.min_size_train=[192]", "solver.eval_period=0",
           "num_vis=0"]


@pytest.fixture(scope="session")
def overfit_run(train_tiny) -> tuple[Path, dict]:
    """``(run_dir, results)`` of OVERFIT (slow: 76 s on 2 idle cores): a model that has learned its 4 images, shared by
    the learning test and the comparison with Detectron2's stock evaluator."""
    return train_tiny(*OVERFIT)
