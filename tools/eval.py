"""COCO box/mask AP of a trained run: ``python tools/eval.py run=<run dir> [checkpoint=...] [output=...]``."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import maskseg_d2  # noqa: F401  (applies the Detectron2 compat shims first)
from maskseg_d2.errors import UserError
from maskseg_d2.utils.cli import exit_on_user_error


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from maskseg_d2.engine.evaluate import evaluate_run
    from maskseg_d2.evaluation import format_ap_table

    with exit_on_user_error():
        if not cfg.run:
            raise UserError("run= is required — python tools/eval.py run=outputs/<task>/runs/<run dir>")
        results = evaluate_run(str(cfg.run), str(cfg.checkpoint), cfg.output, str(cfg.device))
    print(format_ap_table(results), flush=True)


if __name__ == "__main__":
    main()
