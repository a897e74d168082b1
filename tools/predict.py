"""Masked images, mask PNGs, cut-outs, COCO results, Label Studio pre-annotations and LabelMe files from a
trained run: ``python tools/predict.py run=<run dir> input=<image | folder | glob | video | webcam index>``.

Examples::

    python tools/predict.py run=outputs/demo/runs/<run> input=datasets/demo/images
    python tools/predict.py run=<run> input=new_photos save=[overlay,labelstudio] score_threshold=0.3
    python tools/predict.py run=<run> input=clip.mp4            # writes <output>/clip.mp4
    python tools/predict.py run=<run> input=0 video.max_frames=300   # webcam 0
    python tools/predict.py run=<run> input=photos backend=auto      # ONNX Runtime on CPU when it can

``python tools/predict.py --help`` lists every option (from configs/predict.yaml).
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.deploy import open_predictor
from maskseg_d2.predict import predict
from maskseg_d2.utils.cli import exit_on_user_error
from maskseg_d2.utils.logs import tool_log


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), tool_log() as log:
        summary = predict(cfg, open_model=open_predictor)
        log.finish(summary.message(), summary.output)


if __name__ == "__main__":
    main()
