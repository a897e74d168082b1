"""Shared by the benchmarks: a 2-iteration run of a CPU-sized model on a generated demo set (speed, not quality)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from maskseg_d2.engine import train

__all__ = ["ROOT", "train_tiny_run"]

ROOT = Path(__file__).resolve().parents[1]


def train_tiny_run(data_root: Path, run_dir: Path, test_size: int, model: str = "r18_fpn_scratch",
                   device: str = "cpu") -> None:
    """Train ``model`` (random init) for 2 iterations on the demo set at ``data_root``; writes ``run_dir``.

    The test size (``INPUT.MIN_SIZE_TEST``) is ``test_size``: set it to the images' short side and the model
    sees them at full resolution. Masks and boxes are not degenerate after 2 steps; speed does not depend on
    the weights' quality.
    """
    overrides = ["experiment=demo", f"model={model}", "model.weights=scratch", f"dataset.root={data_root}",
                 f"device={device}", "solver.max_iter=2", "solver.warmup_iters=1", "solver.ims_per_batch=2",
                 "solver.base_lr=0.002", "num_vis=0", "logger=none", "d2.DATALOADER.NUM_WORKERS=0",
                 f"augment.min_size_test={test_size}", f"augment.max_size_test={2 * test_size}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)
