"""Train Mask R-CNN and evaluate it: ``python tools/train.py experiment=demo [key=value ...]``.

Sweeps: ``python tools/train.py -m solver.base_lr=0.01,0.02`` (or ``hparams_search=optuna``); several GPUs:
``trainer.num_gpus=4``; SLURM: ``-m hydra/launcher=slurm``. Returns ``optimized_metric`` (default
``segm/AP``) for Hydra sweepers. The run dir (Detectron2's OUTPUT_DIR) is printed at the end.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.engine.launch import launch_train
from maskseg_d2.evaluation import format_ap_table, get_metric
from maskseg_d2.utils.cli import exit_on_user_error


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        results = launch_train(cfg)  # one process, or DDP via Detectron2's launch()
    print(f"\nRun dir: {cfg.paths.output_dir}\n{format_ap_table(results)}", flush=True)
    return get_metric(results, cfg.optimized_metric) if results else None


if __name__ == "__main__":
    main()
