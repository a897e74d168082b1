"""Where one training iteration of ``make demo`` (experiment=demo) spends its time, on this machine's CPU.

    python benchmarks/profile_demo_step.py [--iters 8] [--warmup 3] [--images 24] [--top 12] [hydra overrides ...]

Builds our Trainer for ``experiment=demo`` (ResNet-18 FPN from scratch, batch 4, ~200 px, ``logger=none``, no
evaluation) on a generated demo set, runs ``--warmup`` iterations, then times ``--iters`` iterations split into:
data (the loader's next batch: read, augment, map), the forward of each part of the model (ResNet-18, FPN, RPN with
its anchors, sampling and losses, the box head, the box predictor, the mask head + its loss, and what the ROI
heads do around them: proposal sampling, RoIAlign, the box losses), backward, and the optimizer step. Forward
parts are clocked with module pre/post hooks; backward cannot be split by module this way, so the second table
(torch.profiler, operators by self CPU time over the same iterations) says which operators the time goes to,
backward included.

Early iterations understate the ROI heads: a young RPN proposes few boxes that overlap the objects, so the mask head
gets few positive RoIs; later (up to ``ROI_HEADS.BATCH_SIZE_PER_IMAGE`` x ``POSITIVE_FRACTION`` per image) it gets
many. Profile a trained model with ``model.weights=<run>/model_final.pth`` to see a late iteration. With
``solver.cpu_amp`` resolved to bf16 (experiment=demo on a CPU with bf16 units) the step runs under bf16 autocast, as
the Trainer's does.

Prints means per iteration (so the parts add up) and shares of the iteration; an input to the demo's speed work
(issue 18: a demo that learns in half the time). The numbers change with the machine's load: read the shares.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine.trainer import Trainer

from detectron2.utils.env import seed_all_rng  # isort: skip
from detectron2.utils.events import EventStorage  # isort: skip
from _timing import machine  # isort: skip

ROOT = Path(__file__).resolve().parents[1]


def _clock(module: torch.nn.Module, name: str, spent: dict[str, float]) -> None:
    """Add the wall time of each forward of ``module`` to ``spent[name]``."""
    starts: list[float] = []
    module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

    def done(*_):
        spent[name] += time.perf_counter() - starts.pop()

    module.register_forward_hook(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=8, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=24, help="generated demo images (a quarter for validation)")
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. solver.ims_per_batch=2")
    args = parser.parse_args()
    print(machine())

    tmp = Path(tempfile.mkdtemp(prefix="profile_demo_"))
    make_demo_dataset(tmp / "demo", num_images=args.images)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", f"dataset.root={tmp / 'demo'}", "logger=none",
                                          "num_vis=0", "solver.eval_period=0", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "run")
    d2cfg = build_d2_cfg(cfg, register_dataset(cfg.dataset), str(tmp / "run"))
    seed_all_rng(int(cfg.seed))
    trainer = Trainer(d2cfg, hydra_cfg=cfg)
    trainer.resume_or_load(resume=False)
    inner = trainer._trainer  # Detectron2's SimpleTrainer: the model, optimizer and loader one step uses
    model, optimizer = inner.model, inner.optimizer
    model.train()

    forward: dict[str, float] = defaultdict(float)
    heads = model.roi_heads
    parts = {"backbone: ResNet-18": model.backbone.bottom_up, "backbone: FPN (with ResNet-18)": model.backbone,
             "RPN (head, anchors, sampling, losses)": model.proposal_generator,
             "ROI heads (all)": heads, "box head": heads.box_head, "box predictor":
             heads.box_predictor, "mask head (+ loss)": heads.mask_head}
    for name, module in parts.items():
        _clock(module, name, forward)
    data_iter = iter(inner.data_loader)

    # as Trainer.run_step: the whole step under bf16 autocast when solver.cpu_amp resolved to bf16 on this CPU
    bf16 = bool(d2cfg.MASKSEG.CPU_BF16)

    def step(laps: dict[str, list[float]] | None) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _step(laps)

    def _step(laps: dict[str, list[float]] | None) -> None:
        t0 = time.perf_counter()
        batch = next(data_iter)
        t1 = time.perf_counter()
        forward.clear()
        losses = sum(model(batch).values())
        t2 = time.perf_counter()
        optimizer.zero_grad()
        losses.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if laps is None:
            return
        laps["data"].append(t1 - t0)
        laps["forward"].append(t2 - t1)
        laps["backward"].append(t3 - t2)
        laps["optimizer step"].append(t4 - t3)
        laps["iteration"].append(t4 - t0)
        for name, seconds in forward.items():
            laps[name].append(seconds)

    laps: dict[str, list[float]] = defaultdict(list)
    with EventStorage(0):  # the RPN and ROI heads log their sampling statistics to it, as in training
        for _ in range(args.warmup):
            step(None)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(args.iters):
                step(laps)

    med = {k: statistics.fmean(v) for k, v in laps.items()}  # means: the parts add up to the iteration
    fpn_only = med["backbone: FPN (with ResNet-18)"] - med["backbone: ResNet-18"]
    roi_rest = med["ROI heads (all)"] - med["box head"] - med["box predictor"] \
        - med["mask head (+ loss)"]
    rows = [("data (load, augment, map a batch)", med["data"]),
            ("forward: ResNet-18", med["backbone: ResNet-18"]), ("forward: FPN", fpn_only),
            ("forward: RPN (head, anchors, sampling, losses)", med["RPN (head, anchors, sampling, losses)"]),
            ("forward: box head", med["box head"]),
            ("forward: box predictor (two linear layers)", med["box predictor"]),
            ("forward: mask head + mask loss", med["mask head (+ loss)"]),
            ("forward: ROI sampling, RoIAlign, box losses, rest of ROI heads", roi_rest),
            ("forward: rest (preprocess, loss sum)", med["forward"] - med["backbone: FPN (with ResNet-18)"]
             - med["RPN (head, anchors, sampling, losses)"] - med["ROI heads (all)"]),
            ("backward", med["backward"]), ("optimizer step", med["optimizer step"])]
    total = med["iteration"]
    print(f"\nexperiment=demo {' '.join(args.overrides)}: batch {d2cfg.SOLVER.IMS_PER_BATCH}, "
          f"{args.iters} iterations after {args.warmup} warm-up, torch threads {torch.get_num_threads()}, "
          f"{'bf16 autocast' if bf16 else 'fp32'}")
    print("\n| part of one iteration | ms (mean) | share |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds:.0f} | {100 * seconds / total:.0f} % |")
    print(f"| **iteration** | **{1000 * total:.0f}** | 100 % |")
    print(f"\noperators by self CPU time over the {args.iters} iterations (torch.profiler, forward + backward):\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
