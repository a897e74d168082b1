"""Exported (TorchScript, ONNX Runtime) vs eager PyTorch: images/s on CPU, same model, same images.

    python benchmarks/bench_export.py [--run <run dir>] [--n 8] [--repeat 3] [--threads 2]
                                      [--detections 20] [--model r18_fpn_scratch] [--test-size 192]

All three sides use the same pre/post-processing (:mod:`maskseg_d2.deploy`: resize to the test size, the
model, boxes rescaled and masks pasted at full resolution) and the same score threshold (0) and detection
cap, so every image yields the same instances; only the network call differs:

* eager: ``model.inference(..., do_postprocess=False)`` under ``torch.inference_mode``;
* torchscript: the ``torch.jit.trace`` of Detectron2's TracingAdapter (``tools/export.py format=torchscript``);
* onnx: the same graph through ``torch.onnx.export`` run by ONNX Runtime (CPU provider).

Without ``--run`` a model (``--model``, random init) is trained for 2 iterations on a generated demo set
(so masks and boxes are not degenerate); speed does not depend on the weights' quality. Prints a table of
images/s (end to end and model call only) and the ratio to eager. Export and loading are not timed.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.deploy import EagerModel, export_run, load_exported
from maskseg_d2.engine import train
from maskseg_d2.predict import list_images, read_bgr

ROOT = Path(__file__).resolve().parents[1]


def _train_tiny_run(data_root: Path, run_dir: Path, model: str, test_size: int) -> None:
    overrides = ["experiment=demo", f"model={model}", "model.weights=scratch", f"dataset.root={data_root}",
                 "device=cpu", "solver.max_iter=2", "solver.warmup_iters=1", "solver.ims_per_batch=2",
                 "solver.base_lr=0.002", "num_vis=0", "logger=none", "d2.DATALOADER.NUM_WORKERS=0",
                 f"augment.min_size_test={test_size}", f"augment.max_size_test={2 * test_size}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)


def _rate(fn, items: list) -> float:
    """images/s of one pass of ``fn`` over ``items``."""
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a trained run dir (default: train a tiny one in a temp dir)")
    parser.add_argument("--n", type=int, default=8, help="images per pass")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--detections", type=int, default=20, help="instances per image (score threshold 0)")
    parser.add_argument("--model", default="r18_fpn_scratch", help="configs/model/* for the tiny run")
    parser.add_argument("--test-size", type=int, default=192, help="INPUT.MIN_SIZE_TEST of the tiny run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        _bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(args: argparse.Namespace, tmp: Path) -> None:
    data_root = tmp / "demo"
    make_demo_dataset(data_root, num_images=max(args.n, 8), seed=3)
    run_dir = args.run
    if run_dir is None:
        run_dir = str(tmp / "run")
        _train_tiny_run(data_root, Path(run_dir), args.model, args.test_size)
    paths = list_images(str(data_root / "images"))[: args.n]
    images = [read_bgr(p) for p in paths]
    common = dict(score_threshold=0.0, max_detections=args.detections)

    eager = EagerModel(run_dir, **common)
    sides = {"eager": eager}
    for fmt in ("torchscript", "onnx"):
        result = export_run(run_dir, fmt, output=str(tmp / "export"), images=str(data_root / "images"),
                            num_images=2, **common)
        assert result.ok, result.message()
        sides[fmt] = load_exported(result.path, threads=args.threads)
    instances = sum(len(eager(img)) for img in images) / len(images)
    h, w = images[0].shape[:2]
    test = tuple(eager.preprocess(images[0]).shape[1:])
    print(f"\n{len(images)} images {w}x{h} (model input {test[1]}x{test[0]}), {instances:.1f} instances/image, "
          f"{args.threads} threads, model {Path(run_dir).name}, median of {args.repeat} passes")
    inputs = {name: [m.preprocess(img) for img in images] for name, m in sides.items()}
    e2e = {name: [] for name in sides}
    net = {name: [] for name in sides}
    for name, model in sides.items():  # warm-up (TorchScript optimises on its first calls)
        model(images[0])
        model.raw(inputs[name][0])
    for _ in range(args.repeat):  # interleaved passes: load changes on a shared machine hit every side alike
        for name, model in sides.items():
            e2e[name].append(_rate(model, images))
            net[name].append(_rate(model.raw, inputs[name]))
    rows = [(name, statistics.median(e2e[name]), statistics.median(net[name])) for name in sides]
    print(f"{'':12} {'img/s end-to-end':>17} {'vs eager':>9} {'img/s model only':>17} {'vs eager':>9}")
    for name, a, b in rows:
        print(f"{name:12} {a:17.2f} {a / rows[0][1]:8.2f}x {b:17.2f} {b / rows[0][2]:8.2f}x")


if __name__ == "__main__":
    main()
