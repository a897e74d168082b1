"""COCO AP tables, plots and error analysis: ``python tools/eval.py run=<run dir>``,
``python tools/eval.py gt=<COCO json> pred=<results json>`` or ``python tools/eval.py compare=[runA,runB]``.

``python tools/eval.py --help`` lists every option (from configs/eval.yaml).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.engine.evaluate import evaluate
from maskseg_d2.utils.cli import exit_on_user_error
from maskseg_d2.utils.logs import tool_log


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), tool_log() as log:
        summary = evaluate(cfg)
        log.finish(summary.message(), summary.output)


if __name__ == "__main__":
    main()
