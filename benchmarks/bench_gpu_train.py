"""Training speed on one CUDA GPU: Mask R-CNN R50-FPN at 1024 px, mixed precision (AMP) vs fp32.

    python benchmarks/bench_gpu_train.py [--size 1024] [--max-size 1365] [--batch 2] [--iters 20] [--warmup 5]
                                         [--repeats 3]

The model is ``configs/model/r50_fpn_1x`` built through our config bridge (``build_d2_cfg``) with
``model.weights=scratch`` (random init; speed does not depend on the weights, and the GPU machine needs no
download). Both sides run Detectron2's own training step, the one ``tools/train.py`` runs: ``AMPTrainer`` when
``SOLVER.AMP.ENABLED`` (``solver.amp=true``, our default on CUDA), ``SimpleTrainer`` when not: forward, losses,
backward, SGD step, metrics written to the event storage. They start from the same initial weights and see the
same batches in the same order: demo images (generated, 256 x 192) mapped once by Detectron2's
``DatasetMapper`` to ``--size`` short side (max ``--max-size``), on the CPU before timing (loading is not timed on
either side, as with the zoo's asynchronous loader).

Each repeat times ``--iters`` steps per side after ``--warmup`` untimed ones (first repeat only), with
``torch.cuda.synchronize()`` around; the sides alternate (fp32, amp, amp, fp32, fp32, amp ...). Reported: median
images/s per side, the ratio of the medians, the per-repeat ratios, peak GPU memory, and the median loss per side
(both must be finite). Beside it, the model zoo's anchor: mask_rcnn_R_50_FPN_1x trains at 0.261 s/iter with 16
images/iter on 8 V100 (fp32, 800 px short side), i.e. 7.7 images/s per GPU.

Without a CUDA GPU it prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.demo import make_demo_dataset

from detectron2.config import CfgNode  # isort: skip
from detectron2.data import DatasetCatalog, DatasetMapper  # isort: skip
from detectron2.engine import AMPTrainer, SimpleTrainer  # isort: skip
from detectron2.modeling import build_model  # isort: skip
from detectron2.solver import build_optimizer  # isort: skip
from detectron2.utils.events import EventStorage  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
# Detectron2 MODEL_ZOO.md, mask_rcnn_R_50_FPN_1x: train time 0.261 s/iter, 16 images/iter (IMS_PER_BATCH), 8 V100
ZOO_S_PER_ITER, ZOO_IMAGES_PER_ITER, ZOO_GPUS = 0.261, 16, 8
ZOO_IMAGES_PER_S_PER_GPU = ZOO_IMAGES_PER_ITER / ZOO_S_PER_ITER / ZOO_GPUS  # 7.66


def build_cfg(data_root: Path, run_dir: Path, size: int, max_size: int, batch: int, device: str,
              amp: bool) -> CfgNode:
    """The frozen Detectron2 config of r50_fpn_1x (scratch) on the demo set at ``data_root``, trained at ``size``.

    Args:
        data_root (Path): a demo dataset (``make_demo_dataset``).
        run_dir (Path): OUTPUT_DIR (nothing is written there by the benchmark).
        size (int): short side of the training images (``INPUT.MIN_SIZE_TRAIN``).
        max_size (int): long-side cap (``INPUT.MAX_SIZE_TRAIN``).
        batch (int): images per step (``SOLVER.IMS_PER_BATCH``).
        device (str): cuda | cpu (cpu: only for the test that exercises this code without a GPU).
        amp (bool): ``solver.amp`` (``SOLVER.AMP.ENABLED``; the bridge keeps it off on CPU).

    Returns:
        CfgNode: frozen.
    """
    overrides = ["model=r50_fpn_1x", "model.weights=scratch", f"dataset.root={data_root}", f"device={device}",
                 f"solver.amp={str(amp).lower()}", f"solver.ims_per_batch={batch}", "augment=none",
                 f"augment.min_size_train=[{size}]", f"augment.max_size_train={max_size}", "logger=none"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return build_d2_cfg(cfg, register_dataset(cfg.dataset), str(run_dir))


def map_batches(d2cfg: CfgNode, batch: int, count: int) -> list[list[dict]]:
    """``count`` training batches of ``batch`` images, mapped once by Detectron2's ``DatasetMapper`` (resize to
    the training size, random flip, instances), cycling over the training split."""
    mapper = DatasetMapper(d2cfg, is_train=True)
    dicts = [d for d in DatasetCatalog.get(d2cfg.DATASETS.TRAIN[0]) if d["annotations"]]
    pool = itertools.cycle(dicts)
    return [[mapper(copy.deepcopy(next(pool))) for _ in range(batch)] for _ in range(count)]


class Side:
    """One side of the comparison: a model, its optimizer and Detectron2's trainer for it.

    Args:
        d2cfg (CfgNode): from :func:`build_cfg` (``SOLVER.AMP.ENABLED`` picks AMPTrainer).
        state (dict): initial weights (the same for both sides).
        batches (list[list[dict]]): what :func:`map_batches` returned, cycled over.
    """

    def __init__(self, d2cfg: CfgNode, state: dict, batches: list[list[dict]]) -> None:
        self.model = build_model(d2cfg)
        self.model.load_state_dict(state)
        self.model.train()
        optimizer = build_optimizer(d2cfg, self.model)
        cls = AMPTrainer if d2cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self.trainer = cls(self.model, itertools.cycle(batches), optimizer)
        self.device = torch.device(d2cfg.MODEL.DEVICE)
        self.images_per_step = len(batches[0])
        self.iter = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def steps(self, n: int) -> tuple[float, float]:
        """Run ``n`` training steps; returns (seconds, median total loss of the steps)."""
        losses = []
        with EventStorage(self.iter) as storage:
            self.trainer.storage = storage
            self._sync()
            start = time.perf_counter()
            for _ in range(n):
                self.trainer.iter = storage.iter = self.iter
                self.trainer.run_step()
                losses.append(storage.history("total_loss").latest())
                self.iter += 1
            self._sync()
            seconds = time.perf_counter() - start
        return seconds, statistics.median(losses)


def run(sides: dict[str, Side], iters: int, warmup: int, repeats: int) -> dict[str, list[dict]]:
    """Time ``iters`` steps per side per repeat, the sides alternating order each repeat (A B, B A, A B ...).

    Returns:
        dict[str, list[dict]]: per side, per repeat: ``images_per_s``, ``loss``, ``peak_gib``.
    """
    for side in sides.values():
        if warmup:
            side.steps(warmup)  # cudnn autotuning, allocator growth
    names, out = list(sides), {n: [] for n in sides}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            side = sides[name]
            if side.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(side.device)
            seconds, loss = side.steps(iters)
            peak = torch.cuda.max_memory_allocated(side.device) / 2**30 if side.device.type == "cuda" else 0.0
            out[name].append({"images_per_s": iters * side.images_per_step / seconds, "loss": loss,
                              "peak_gib": peak})
            print(f"  repeat {r + 1}/{repeats} {name:>4s}: {out[name][-1]['images_per_s']:.2f} images/s, "
                  f"loss {loss:.3f}, peak {peak:.1f} GiB", flush=True)
    return out


def report(results: dict[str, list[dict]], args: argparse.Namespace, device_name: str) -> None:
    """Print the table: medians per side, the AMP / fp32 ratio, per-repeat ratios, the zoo anchor."""
    med = {n: {k: statistics.median(s[k] for s in results[n]) for k in ("images_per_s", "loss", "peak_gib")}
           for n in results}
    for name, m in med.items():
        if not math.isfinite(m["loss"]):
            raise SystemExit(f"bench_gpu_train: the {name} side's loss is {m['loss']} — training diverged")
    per = [a["images_per_s"] / b["images_per_s"] for a, b in zip(results["amp"], results["fp32"])]
    n = len(results["fp32"])
    print(f"\n{device_name}, torch {torch.__version__} (CUDA {torch.version.cuda}), {date.today().isoformat()}")
    print(f"R50-FPN Mask R-CNN (configs/model/r50_fpn_1x, scratch), {args.batch} images/step at "
          f"{args.size} px short side (max {args.max_size}), {args.iters} steps x {n} repeats\n")
    print(f"| side | images/s (median of {n}) | peak GPU memory (GiB) | median loss |")
    print("|---|---:|---:|---:|")
    for name in ("fp32", "amp"):
        m = med[name]
        print(f"| {name} | {m['images_per_s']:.2f} | {m['peak_gib']:.1f} | {m['loss']:.3f} |")
    print(f"| model zoo anchor: 16 img / {ZOO_S_PER_ITER} s on {ZOO_GPUS} V100, fp32, 800 px | "
          f"{ZOO_IMAGES_PER_S_PER_GPU:.1f} per GPU | | |")
    ratio = med["amp"]["images_per_s"] / med["fp32"]["images_per_s"]
    print(f"\nAMP / fp32: **{ratio:.2f}x** (per-repeat: {', '.join(f'{p:.2f}' for p in per)}); "
          f"fp32 / zoo anchor per GPU: {med['fp32']['images_per_s'] / ZOO_IMAGES_PER_S_PER_GPU:.2f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024, help="short side of the training images (px)")
    p.add_argument("--max-size", type=int, default=1365, help="long-side cap (px)")
    p.add_argument("--batch", type=int, default=2, help="images per step (the zoo: 2 per GPU)")
    p.add_argument("--iters", type=int, default=20, help="timed steps per side per repeat")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per side before the first repeat")
    p.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate order each round")
    p.add_argument("--batches", type=int, default=8, help="distinct batches mapped once and cycled over")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"bench_gpu_train: no CUDA GPU visible to torch {torch.__version__} (CUDA build "
              f"{torch.version.cuda}); this benchmark measures GPU training — run it on a machine with one",
              file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True  # fixed sizes: pick the fastest kernels once (both sides alike)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        make_demo_dataset(data, num_images=16, seed=1)
        cfgs = {name: build_cfg(data, Path(tmp) / name, args.size, args.max_size, args.batch, "cuda", amp)
                for name, amp in (("fp32", False), ("amp", True))}
        assert cfgs["amp"].SOLVER.AMP.ENABLED and not cfgs["fp32"].SOLVER.AMP.ENABLED
        batches = map_batches(cfgs["fp32"], args.batch, args.batches)
        torch.manual_seed(0)
        state = build_model(cfgs["fp32"]).state_dict()
        sides = {name: Side(cfg, state, batches) for name, cfg in cfgs.items()}
        results = run(sides, args.iters, args.warmup, args.repeats)
    report(results, args, torch.cuda.get_device_name())
    return 0


if __name__ == "__main__":
    sys.exit(main())
