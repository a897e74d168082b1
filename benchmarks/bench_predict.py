"""Our ``predict_source()`` vs the Detectron2 demo loop (DefaultPredictor + Visualizer), same model, same images.

    python benchmarks/bench_predict.py [--run <run dir>] [--n 24] [--size 640x480] [--detections 20]
                                       [--batch 4] [--workers 2] [--device cpu] [--chunks 4]

Both sides read the same images, run the same model at the same test size with the same score threshold
(0) and detection cap (so they draw the same number of instances), and write one JPEG overlay per image:

* baseline, the ``demo/demo.py`` way: ``read_image`` -> ``DefaultPredictor`` -> ``Visualizer
  .draw_instance_predictions`` (ColorMode.IMAGE) -> ``cv2.imwrite``, one image after the other;
* ours: ``maskseg_d2.predict.predict_source(save=[overlay])``: batched ``inference_mode`` (+ AMP on CUDA), decoding
  and writing in threads, OpenCV drawing.

Without ``--run`` a model is trained for 2 iterations on a generated demo set (CPU-sized ResNet-18 FPN)
with its test size set to the images' short side, so the model sees the images at full resolution.
Prints images/s of both and the ratio (goal: >= 2x on CPU). Model loading is not timed on either side. The
images are split into ``--chunks`` and the two sides take turns chunk by chunk (baseline, ours, baseline,
ours ...), so both see the same load on a shared machine; the per-chunk ratios show how noisy it was.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine import train
from maskseg_d2.engine.run import Run
from maskseg_d2.predict import predict_source

from detectron2.data import MetadataCatalog  # isort: skip
from detectron2.data.detection_utils import read_image  # isort: skip
from detectron2.engine import DefaultPredictor  # isort: skip
from detectron2.utils.visualizer import ColorMode, Visualizer  # isort: skip

ROOT = Path(__file__).resolve().parents[1]


def _train_tiny_run(data_root: Path, run_dir: Path, test_size: int, device: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=demo",
                f"dataset.root={data_root}",
                f"device={device}",
                "solver.max_iter=2",
                "solver.warmup_iters=1",
                "solver.ims_per_batch=2",
                "num_vis=0",
                "logger=none",
                f"augment.min_size_test={test_size}",
                f"augment.max_size_test={2 * test_size}",
                "d2.DATALOADER.NUM_WORKERS=0",
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)


class _Baseline:
    """The demo.py loop: DefaultPredictor, Visualizer (ColorMode.IMAGE), cv2.imwrite; built once."""

    def __init__(self, run_dir: str, detections: int, device: str, out: Path) -> None:
        run = Run.open(run_dir, device=device, score_threshold=0.0, max_detections=detections)
        self.predictor = DefaultPredictor(run.d2cfg)
        self.metadata = MetadataCatalog.get("__bench_predict")
        self.metadata.thing_classes = run.thing_classes
        self.out = out
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, images: list[str]) -> tuple[float, int]:
        """Returns (seconds, instances drawn)."""
        n = 0
        start = time.perf_counter()
        for path in images:
            img = read_image(path, format="BGR")
            instances = self.predictor(img)["instances"].to("cpu")
            vis = Visualizer(img[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
            canvas = vis.draw_instance_predictions(predictions=instances).get_image()
            cv2.imwrite(str(self.out / (Path(path).stem + ".jpg")), canvas[:, :, ::-1])
            n += len(instances)
        return time.perf_counter() - start, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run dir (default: train a 2-iteration demo model)")
    ap.add_argument("--n", type=int, default=24, help="images")
    ap.add_argument("--size", default="640x480", help="WxH of the generated images")
    ap.add_argument("--detections", type=int, default=20, help="instances per image (score threshold 0)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunks", type=int, default=4, help="the sides take turns on this many image chunks")
    args = ap.parse_args()

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        make_demo_dataset(tmp / "demo", num_images=max(args.n, 8), width=width, height=height, seed=3)
        images = sorted(str(p) for p in (tmp / "demo" / "images").glob("*.jpg"))[: args.n]
        run_dir = args.run
        if run_dir is None:
            run_dir = str(tmp / "run")
            _train_tiny_run(tmp / "demo", Path(run_dir), min(width, height), args.device)
        baseline = _Baseline(run_dir, args.detections, args.device, tmp / "out_baseline")
        baseline(images[:1])  # first-call warm-up; ours pays its own inside each timed chunk
        size = -(-len(images) // max(args.chunks, 1))
        base_s = ours_s = 0.0
        base_n = ours_n = 0
        ratios = []
        for k in range(0, len(images), size):
            chunk = images[k : k + size]
            folder = tmp / f"input_{k:04d}"
            folder.mkdir()
            for p in chunk:
                os.symlink(p, folder / Path(p).name)
            b_s, b_n = baseline(chunk)
            ours = predict_source(
                run_dir,
                str(folder),
                str(tmp / "out_ours"),
                score_threshold=0.0,
                device=args.device,
                max_detections=args.detections,
                save=["overlay"],
                batch_size=args.batch,
                workers=args.workers,
                progress=False,
            )
            base_s, base_n, ours_s, ours_n = (
                base_s + b_s,
                base_n + b_n,
                ours_s + ours.seconds,
                ours_n + ours.instances,
            )
            ratios.append(b_s / ours.seconds)
        base_ips, ours_ips = len(images) / base_s, len(images) / ours_s
        print(
            f"\n{len(images)} images {width}x{height}, device={args.device}, "
            f"torch threads={torch.get_num_threads()}, batch={args.batch}, workers={args.workers}"
        )
        print(f"{'':34s}{'images/s':>10s}{'instances/img':>15s}")
        print(f"{'DefaultPredictor + Visualizer':34s}{base_ips:10.2f}{base_n / len(images):15.1f}")
        print(f"{'maskseg_d2.predict (overlay)':34s}{ours_ips:10.2f}{ours_n / len(images):15.1f}")
        print(
            f"ratio: {ours_ips / base_ips:.2f}x (goal >= 2x on CPU); per chunk: "
            + ", ".join(f"{r:.2f}x" for r in ratios)
        )


if __name__ == "__main__":
    main()
