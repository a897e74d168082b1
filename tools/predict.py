"""Masked images, mask PNGs, cut-outs, COCO results, Label Studio pre-annotations and LabelMe files from a
trained run: ``python tools/predict.py run=<run dir> input=<image | folder | glob | video | webcam index>``.

Examples::

    python tools/predict.py run=outputs/demo/runs/<run> input=datasets/demo/images
    python tools/predict.py run=<run> input=new_photos save=[overlay,labelstudio] score_threshold=0.3
    python tools/predict.py run=<run> input=clip.mp4            # writes <output>/clip.mp4
    python tools/predict.py run=<run> input=0 video.max_frames=300   # webcam 0

See configs/predict.yaml for every option.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.predict import predict
from maskseg_d2.utils.cli import exit_on_user_error


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        summary = predict(cfg)
    print(summary.message(), flush=True)


if __name__ == "__main__":
    main()
