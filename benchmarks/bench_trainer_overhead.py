"""Our Trainer with its default hooks vs stock Detectron2 DefaultTrainer + COCOEvaluator: same config, data and seed.

    python benchmarks/bench_trainer_overhead.py [--iters 12] [--eval-period 6] [--batch 2] [--images 12]
                                                [--repeats 3] [--logger wandb] [hydra overrides ...]

Both train the demo model (experiment=demo: ResNet-18 FPN from scratch, ~200 px, CPU; in fp32,
``solver.cpu_amp=false``, as stock Detectron2 has no CPU bf16) on a generated demo set for the same ``--iters``
iterations and evaluate every ``--eval-period`` iterations and after the last one, with the same checkpoint period
(only ``model_final.pth``):

* stock: ``DefaultTrainer`` whose ``build_evaluator`` returns ``COCOEvaluator(use_fast_impl=False)`` (what
  Detectron2's ``tools/train_net.py`` does; the fast C++ COCOeval needs Detectron2's compiled ops), its default
  writers (console, metrics.json, TensorBoard) and hooks;
* ours: ``maskseg_d2.engine.trainer.Trainer`` with what ``tools/train.py`` gives it by default --
  ``ExactCOCOEvaluator``, the validation loss, the best checkpoint (``model_best.pth`` + ``best_metric.json``, atomic
  saves with fsync), the write after each evaluation, and ``logger=wandb`` (offline: ``WANDB_MODE=offline``, no
  network) with 4 validation images drawn at each evaluation, plus ``curves.png`` at the end.

Both evaluate with ``ROI_HEADS.SCORE_THRESH_TEST=0`` (a model this young scores below the default 0.05: without it
the evaluations would score nothing, a trained model's would score 100 detections per image).

Timed per run: ``build`` (the trainer's constructor: model, optimizer, data loader, hooks, writers; ours starts the
W&B run here) and ``train`` (``trainer.train()``: every iteration, every evaluation, ``after_train``). Each iteration's
wall time is taken from the first hook's ``before_step`` to the last hook's ``after_step``; ``iteration (median)`` is
the median over the iterations that neither evaluate nor save (not the first, which starts the data loader, nor
the last); ``one periodic evaluation`` is the median extra wall time of an iteration that evaluates; from these
the script estimates the wall ratio at longer evaluation periods. The CPU time of this process (and of its child
processes: W&B's service) is printed beside the wall times. The sides alternate over ``--repeats`` rounds (stock,
ours, ours, stock, ...); printed: medians, the ratio ours / stock (goal for the wall ratio: <= 1.05), and where the
time goes: every hook's wall seconds per side (median over the rounds).

Same output: with ``DATALOADER.NUM_WORKERS=0`` and the same seed both trainers draw the same batches, so they must
log the same training losses (metrics.json) and end with bit-identical weights; both evaluators must write the same
final predictions (``coco_instances_results.json``: image, category id after un-mapping, RLE, score, box) and report
the same AP values (<= 1e-9; a model this young scores ~0 AP, so the predictions are the sharper check). A difference
exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import weakref
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine.hooks import is_eval_iteration
from maskseg_d2.engine.trainer import Trainer

from detectron2.engine import DefaultTrainer  # isort: skip
from detectron2.engine.train_loop import HookBase  # isort: skip
from detectron2.evaluation import COCOEvaluator  # isort: skip
from detectron2.utils.env import seed_all_rng  # isort: skip
from _same import Mismatch, exit_on_mismatch  # isort: skip
from _timing import Sample, interleave, machine, median, ratio_table  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
STOCK, OURS = "stock DefaultTrainer", "maskseg_d2 Trainer"


class StockTrainer(DefaultTrainer):
    """Detectron2's tools/train_net.py way: DefaultTrainer + COCOEvaluator (pycocotools)."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"),
                             use_fast_impl=False)


def _cfg(data_root: Path, run_dir: Path, args: argparse.Namespace):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=demo", f"dataset.root={data_root}", "device=cpu", f"solver.max_iter={args.iters}",
            f"solver.ims_per_batch={args.batch}", f"solver.eval_period={args.eval_period}",
            f"logger={args.logger}", "d2.DATALOADER.NUM_WORKERS=0", "d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0",
            # fp32 on both sides: stock DefaultTrainer has no CPU bf16 (solver.cpu_amp), and the weights must match
            "solver.cpu_amp=false", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


class _Clock(HookBase):
    """First hook: starts the iteration's clock; last hook (``end``): stops it."""

    def __init__(self, laps: list, start: "_Clock | None" = None) -> None:
        self.laps, self.start, self.t0, self.c0 = laps, start, 0.0, 0.0

    def before_step(self) -> None:
        if self.start is None:
            self.t0, self.c0 = time.perf_counter(), time.process_time()

    def after_step(self) -> None:
        if self.start is not None:
            self.laps.append((self.trainer.iter, time.perf_counter() - self.start.t0,
                              time.process_time() - self.start.c0))


def _instrument(trainer) -> tuple[dict[str, float], dict[int, float], list]:
    """Wall seconds per hook class (all its callbacks), hook seconds per iteration, and per-iteration laps."""
    spent: dict[str, float] = defaultdict(float)
    per_iter: dict[int, float] = defaultdict(float)
    for hook in trainer._hooks:
        for name in ("before_train", "before_step", "after_step", "after_train"):
            method = getattr(hook, name)

            def timed(method=method, key=type(hook).__name__, step=name.endswith("_step")):
                start = time.perf_counter()
                try:
                    return method()
                finally:
                    spent[key] += time.perf_counter() - start
                    if step:
                        per_iter[trainer.iter] += time.perf_counter() - start

            setattr(hook, name, timed)
    laps: list = []
    first = _Clock(laps)
    last = _Clock(laps, start=first)
    for h in (first, last):
        h.trainer = weakref.proxy(trainer)
    trainer._hooks = [first, *trainer._hooks, last]
    if hasattr(trainer, "_finish"):  # ours: curves.png, W&B finish (in train()'s finally)
        finish = trainer._finish

        def timed_finish(code, finish=finish):
            start = time.perf_counter()
            try:
                return finish(code)
            finally:
                spent["Trainer._finish (curves.png, W&B finish)"] += time.perf_counter() - start

        trainer._finish = timed_finish
    return spent, per_iter, laps


def run_once(kind: str, data_root: Path, tmp: Path, args: argparse.Namespace, r: int) -> Sample:
    run_dir = tmp / f"{'ours' if kind == OURS else 'stock'}_{r}"
    cfg = _cfg(data_root, run_dir, args)
    d2cfg = build_d2_cfg(cfg, register_dataset(cfg.dataset), str(run_dir))
    seed_all_rng(int(cfg.seed))
    start = time.perf_counter()
    trainer = Trainer(d2cfg, hydra_cfg=cfg) if kind == OURS else StockTrainer(d2cfg)
    built = time.perf_counter() - start
    trainer.resume_or_load(resume=False)
    spent, per_iter, laps = _instrument(trainer)
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    trainer.train()
    trained = time.perf_counter() - start
    cpu, children = time.process_time() - cpu, _children_cpu() - children
    evals = [w for i, w, _ in laps if is_eval_iteration(_At(i, args.iters), args.eval_period)]
    steady = [i for i, _, _ in laps if 0 < i < args.iters - 1 and not is_eval_iteration(_At(i, args.iters),
                                                                                         args.eval_period)]
    wall = {i: w for i, w, _ in laps}
    times = {"build": built, "train": trained, "build + train": built + trained,
             "iteration (median)": statistics.median(wall[i] for i in steady),
             "hooks per iteration (mean)": statistics.mean(per_iter[i] for i in steady),
             "train CPU": cpu, "child processes CPU": children}
    if evals:  # the extra wall time of an iteration that evaluates
        times["periodic evaluation"] = statistics.median(evals) - times["iteration (median)"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines()]
    predictions = run_dir / ("eval" if kind == OURS else "inference") / "coco_instances_results.json"
    output = {"hooks": dict(spent), "laps": laps, "results": trainer._last_eval_results,
              "predictions": json.loads(predictions.read_text()),
              "losses": [(m["iteration"], m["total_loss"]) for m in metrics if "total_loss" in m],
              "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}}
    del trainer
    return Sample(times, output)


def _children_cpu() -> float:
    """CPU seconds used so far by this process's live child processes (the W&B service, wandb-core)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class _At:
    """Just enough of a trainer for :func:`is_eval_iteration`."""

    def __init__(self, iteration: int, max_iter: int) -> None:
        self.iter, self.max_iter = iteration, max_iter


def check_same(stock: Sample, ours: Sample) -> str:
    """Same losses, bit-identical final weights, same final AP; returns a one-line summary."""
    a, b = stock.output, ours.output
    la, lb = dict(a["losses"]), dict(b["losses"])  # ours also writes after each evaluation: more entries
    common = sorted(set(la) & set(lb))
    if not common or max(common) != max(la):
        raise Mismatch(f"no common final loss: stock logged iterations {sorted(la)}, ours {sorted(lb)}")
    diff = [(i, la[i], lb[i]) for i in common if la[i] != lb[i]]
    if diff:
        raise Mismatch(f"training losses differ (iteration, stock, ours): {diff[:5]}")
    if set(a["weights"]) != set(b["weights"]):
        raise Mismatch(f"weight names differ: {sorted(set(a['weights']) ^ set(b['weights']))[:5]}")
    differ = [k for k in a["weights"] if not torch.equal(a["weights"][k], b["weights"][k])]
    if differ:
        raise Mismatch(f"final weights differ: {differ[:5]}")
    pa, pb = (sorted(side["predictions"], key=lambda r: (r["image_id"], -r["score"], r["category_id"]))
              for side in (a, b))
    if len(pa) != len(pb):
        raise Mismatch(f"final evaluation: {len(pa)} predictions (COCOEvaluator) vs {len(pb)} (ExactCOCOEvaluator)")
    for x, y in zip(pa, pb):  # the same model's output, un-mapped and encoded by each evaluator
        same = [x[k] == y[k] for k in ("image_id", "category_id", "segmentation")]
        close = abs(x["score"] - y["score"]) <= 1e-6 and np.allclose(x["bbox"], y["bbox"], rtol=0, atol=1e-3)
        if not (all(same) and close):
            raise Mismatch(f"final evaluation's predictions differ: {x} (COCOEvaluator) vs {y} (ExactCOCOEvaluator)")
    bad = []
    if set(a["results"]) != set(b["results"]):
        bad.append(f"tasks {sorted(a['results'])} vs {sorted(b['results'])}")
    for task in sorted(set(a["results"]) & set(b["results"])):
        x, y = a["results"][task], b["results"][task]
        keys = sorted(set(x) & set(y))  # AP, AP50, ..., AP-<class>; ours adds AP50-<class>
        bad += [f"{task}/{k}: {x[k]} vs {y[k]}" for k in keys
                if not (math.isnan(x[k]) and math.isnan(y[k]) or abs(x[k] - y[k]) <= 1e-9)]
        if len(keys) < 6 + 2:
            bad.append(f"{task}: only {keys} in common")
    if bad:
        raise Mismatch("final evaluation differs (COCOEvaluator vs ExactCOCOEvaluator): " + "; ".join(bad))
    ap = {t: b["results"][t]["AP"] for t in b["results"]}
    return (f"losses equal at iterations {common}, {len(a['weights'])} weight tensors bit-identical, the "
            f"{len(pa)} predictions of the final evaluation and its AP ({ap}) equal")


def hook_table(out: dict) -> str:
    names = sorted({k for s in out[STOCK] + out[OURS] for k in s.output["hooks"]})
    lines = [f"| hook (wall s, median of {len(out[OURS])}) | {STOCK} | {OURS} |", "|---|---:|---:|"]
    for name in names:
        cells = [statistics.median(s.output["hooks"].get(name, 0.0) for s in out[k]) for k in (STOCK, OURS)]
        lines.append(f"| {name} | {cells[0]:.2f} | {cells[1]:.2f} |")
    return "\n".join(lines)


@exit_on_mismatch
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--eval-period", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--images", type=int, default=12, help="demo images (a quarter go to validation)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate (medians reported)")
    parser.add_argument("--logger", default="wandb", help="ours: wandb (default) | tensorboard | none (to see W&B's "
                        "share); the stock side always has Detectron2's default writers")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides (both sides; only ours reads "
                        "solver.val_loss, solver.best.*), e.g. solver.val_loss=false")
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "offline"  # never the network
    os.environ.setdefault("WANDB_SILENT", "true")
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_dataset(tmp / "demo", num_images=args.images, seed=1)
        out = interleave({STOCK: lambda r: run_once(STOCK, tmp / "demo", tmp, args, r),
                          OURS: lambda r: run_once(OURS, tmp / "demo", tmp, args, r)}, args.repeats)
    summary = [check_same(a, b) for a, b in zip(out[STOCK], out[OURS])]
    print(f"\nsame output in all {args.repeats} rounds: {summary[0]}")
    print(f"{args.iters} iterations, batch {args.batch}, evaluation every {args.eval_period} and at the end, "
          f"{args.images} demo images; {machine()}")
    print(ratio_table(out, OURS, STOCK, [
        ("build (constructor)", "build"), ("train() wall", "train"), ("build + train wall", "build + train"),
        ("iteration without evaluation, wall (median)", "iteration (median)"),
        ("train() CPU of this process", "train CPU")]
        + ([("one periodic evaluation (extra wall of its iteration)", "periodic evaluation")]
           if "periodic evaluation" in out[OURS][0].times else [])))
    hooks = {k: median(out[k], "hooks per iteration (mean)") for k in (STOCK, OURS)}
    step = median(out[STOCK], "iteration (median)")
    print(f"hooks per iteration without evaluation (mean, measured inside each hook): stock {hooks[STOCK] * 1e3:.1f} "
          f"ms, ours {hooks[OURS] * 1e3:.1f} ms: ours adds {(hooks[OURS] - hooks[STOCK]) * 1e3:.1f} ms to a "
          f"{step:.2f} s iteration ({(hooks[OURS] - hooks[STOCK]) / step * 100:.2f} %)")
    kids = [median(out[k], "child processes CPU") for k in (STOCK, OURS)]
    print(f"CPU of child processes during train() (the W&B service): stock {kids[0]:.1f} s, ours {kids[1]:.1f} s")
    wall = median(out[OURS], "train") / median(out[STOCK], "train")
    per_iter = median(out[OURS], "iteration (median)") / median(out[STOCK], "iteration (median)")
    print(f"wall ratio ours / stock, train(): {wall:.3f} (goal <= 1.05); per-iteration ratio: {per_iter:.3f}")
    if "periodic evaluation" in out[OURS][0].times:
        it = {k: median(out[k], "iteration (median)") for k in (STOCK, OURS)}
        ev = {k: median(out[k], "periodic evaluation") for k in (STOCK, OURS)}
        print("estimated wall ratio with one evaluation every N iterations, (N * iteration + evaluation) from the "
              "medians above: " + ", ".join(f"N={n}: {(n * it[OURS] + ev[OURS]) / (n * it[STOCK] + ev[STOCK]):.3f}"
                                            for n in (args.eval_period, 100, 1000, 5000)))
    print("\nwhere the time goes:\n" + hook_table(out))


if __name__ == "__main__":
    main()
