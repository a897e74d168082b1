"""Look at data and runs: ground-truth grids of any dataset config, a run's predictions on its validation
split (alone or beside the ground truth) and its loss / AP curves.

Examples::

    python tools/visualize.py mode=gt dataset=cars_signs split=all
    python tools/visualize.py mode=gt_vs_pred run=outputs/demo/runs/<run>
    python tools/visualize.py mode=curves run=outputs/demo/runs/<run>

``python tools/visualize.py --help`` lists every option (from configs/visualize.yaml).
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.browse import visualize
from maskseg_d2.utils.cli import exit_on_user_error
from maskseg_d2.utils.logs import tool_log


@hydra.main(version_base="1.3", config_path="../configs", config_name="visualize")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), tool_log() as log:
        paths = visualize(cfg)
        folder = paths[-1].rsplit("/", 1)[0] if paths else cfg.output
        log.finish(f"wrote {len(paths)} PNG(s) to {folder}:\n  " + "\n  ".join(paths[-4:]), folder)


if __name__ == "__main__":
    main()
