"""Export a trained run for deployment and check it: ``python tools/export.py run=<run dir> format=torchscript``.

Examples::

    python tools/export.py run=outputs/demo/runs/<run>                    # <run>/export/model.ts
    python tools/export.py run=<run> format=onnx images=datasets/demo/images

The exported model is loaded back and compared with the eager model on sample images (box IoU, mask
IoU, score difference per image); exit code 1 when they differ beyond the tolerances. Load it with
``maskseg_d2.deploy.load_exported(path)``. ``python tools/export.py --help`` lists every option (from
configs/export.yaml).
"""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from maskseg_d2.deploy import export
from maskseg_d2.utils.cli import exit_on_user_error
from maskseg_d2.utils.logs import tool_log


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), tool_log() as log:
        result = export(cfg)
        log.finish(result.message(), os.path.dirname(result.path))
    if not result.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
