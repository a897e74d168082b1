"""Masked images from a trained run: ``python tools/predict.py run=<run dir> input=<image|folder|glob>``."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import maskseg_d2  # noqa: F401  (applies the Detectron2 compat shims first)
from maskseg_d2.errors import UserError
from maskseg_d2.utils.cli import exit_on_user_error


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from maskseg_d2.predict import predict

    with exit_on_user_error():
        if not cfg.run or not cfg.input:
            raise UserError("run= and input= are required — python tools/predict.py run=<run dir> input=<images>")
        paths = predict(str(cfg.run), str(cfg.input), cfg.output, float(cfg.score_threshold),
                        str(cfg.checkpoint), str(cfg.device))
    print(f"wrote {len(paths)} overlay(s) to {paths[0].rsplit('/', 1)[0] if paths else cfg.output}", flush=True)


if __name__ == "__main__":
    main()
