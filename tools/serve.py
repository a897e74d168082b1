"""A trained run's model as a Label Studio ML backend: ``python tools/serve.py run=<run dir>``.

Examples::

    python tools/serve.py run=outputs/demo/runs/<run>
    python tools/serve.py run=<run> port=9090 url=http://localhost:8080 score_threshold=0.3

Then in Label Studio: Settings -> Model -> Connect Model, URL ``http://localhost:9090``. ``python tools/serve.py
--help`` lists every option (from configs/serve.yaml).
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from maskseg_d2.serve import serve
from maskseg_d2.utils.cli import exit_on_user_error


@hydra.main(version_base="1.3", config_path="../configs", config_name="serve")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        serve(cfg)


if __name__ == "__main__":
    main()
