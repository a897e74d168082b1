"""Our Trainer with all its hooks vs a plain DefaultTrainer: same config, same data, same seed, one process.

    python benchmarks/bench_trainer_overhead.py [--iters 60] [--eval-period 20] [--batch 2]

Both train the demo model (experiment=demo, CPU) on a generated 16-image demo set and evaluate (COCO) every
``--eval-period`` iterations. The plain trainer is DefaultTrainer + the same COCO evaluator (it needs one to
evaluate). Ours adds the validation loss, best checkpoint, early stopping (patience too large to trigger),
the write-after-evaluation writer, TensorBoard and W&B (offline, with validation images), curves.png.

Every hook's after_step/after_train is timed, so the report separates the per-iteration overhead of the
hooks from the extra work done at evaluations (the validation loss and the W&B images are features, whose
cost is paid once per evaluation). Goal: per-iteration ratio <= 1.03.

Timings are this process's CPU seconds (``time.process_time``, all torch threads) as well as wall seconds:
on a shared machine other jobs make wall time swing by tens of percent between runs, CPU time much less.
(The wandb-core service runs in its own process; in offline mode it only writes files.)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine.trainer import Trainer
from maskseg_d2.evaluation import build_evaluator

from detectron2.engine import DefaultTrainer  # isort: skip
from detectron2.utils.env import seed_all_rng  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
EVAL_HOOKS = ("EvalHook", "ValidationLoss")  # work done at evaluations (the same COCO eval for both + val loss)


def _cfg(data_root: Path, run_dir: Path, args: argparse.Namespace):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "experiment=demo", f"dataset.root={data_root}", "device=cpu", f"solver.max_iter={args.iters}",
            f"solver.ims_per_batch={args.batch}", f"solver.eval_period={args.eval_period}",
            "solver.checkpoint_period=100000", "solver.early_stopping.patience=1000", "logger=wandb",
            "logger.num_images=4"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


def _time_hooks(trainer) -> dict[str, float]:
    """Wrap every hook's after_step/after_train with a CPU timer; returns the live {hook class: CPU s} dict."""
    spent: dict[str, float] = defaultdict(float)
    for hook in trainer._hooks:
        for name in ("after_step", "after_train"):
            method = getattr(hook, name)

            def timed(method=method, key=type(hook).__name__):
                start = time.process_time()
                try:
                    return method()
                finally:
                    spent[key] += time.process_time() - start

            setattr(hook, name, timed)
    return spent


def _run(kind: str, cfg, d2cfg) -> dict:
    class PlainTrainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            return build_evaluator(dataset_name, os.path.join(cfg.OUTPUT_DIR, "eval"))

    seed_all_rng(int(cfg.seed))
    start = time.perf_counter()
    trainer = Trainer(d2cfg, hydra_cfg=cfg) if kind == "ours" else PlainTrainer(d2cfg)
    built = time.perf_counter() - start
    spent = _time_hooks(trainer)
    trainer.resume_or_load(resume=False)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    iters = d2cfg.SOLVER.MAX_ITER
    eval_cpu = sum(spent[k] for k in EVAL_HOOKS)
    return {"kind": kind, "build_s": built, "wall_s": wall, "cpu_s": cpu, "eval_s": eval_cpu, "hooks": dict(spent),
            "wall_per_iter": wall / iters, "s_per_iter": cpu / iters, "s_per_iter_no_eval": (cpu - eval_cpu) / iters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--eval-period", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp) / "demo"
        make_demo_dataset(data_root, num_images=16, seed=1)
        rows = []
        for kind in ("plain", "ours", "plain", "ours"):  # interleaved: drifting machine load hits both
            run_dir = Path(tmp) / f"{kind}_{len(rows)}"
            cfg = _cfg(data_root, run_dir, args)
            info = register_dataset(cfg.dataset)
            rows.append(_run(kind, cfg, build_d2_cfg(cfg, info, str(run_dir))))
            r = rows[-1]
            print(f"{kind:5s} wall {r['wall_s']:6.1f} s ({r['wall_per_iter']:.3f} s/iter)  CPU {r['cpu_s']:6.1f} s "
                  f"({r['s_per_iter']:.3f} s/iter; without evaluation hooks {r['s_per_iter_no_eval']:.3f})", flush=True)

    def best(kind: str, key: str) -> float:
        return min(r[key] for r in rows if r["kind"] == kind)

    print(f"\n{args.iters} iterations, batch {args.batch}, COCO eval every {args.eval_period} "
          f"(best of 2 runs each, {os.cpu_count()} CPU cores, torch threads {__import__('torch').get_num_threads()})")
    print("| trainer | wall s/iter | CPU s/iter (all) | CPU s/iter (without evaluation hooks) "
          "| evaluation hooks CPU s |")
    print("|---|---|---|---|---|")
    for kind in ("plain", "ours"):
        print(f"| {kind} | {best(kind, 'wall_per_iter'):.3f} | {best(kind, 's_per_iter'):.3f} | "
              f"{best(kind, 's_per_iter_no_eval'):.3f} | {best(kind, 'eval_s'):.1f} |")
    ours = min((r for r in rows if r["kind"] == "ours"), key=lambda r: r["cpu_s"])
    print("\nours, CPU seconds per hook:", ", ".join(f"{k} {v:.2f}" for k, v in sorted(ours["hooks"].items())))
    print(f"ours, W&B start + Trainer build: {best('ours', 'build_s'):.1f} s (plain {best('plain', 'build_s'):.1f} s)")
    ratio = best("ours", "s_per_iter_no_eval") / best("plain", "s_per_iter_no_eval")
    print(f"\nratio ours/plain, CPU s/iter without evaluation hooks: {ratio:.3f} (goal <= 1.03)")
    print(f"ratio ours/plain, CPU s/iter all inclusive (+ validation loss, W&B images at each evaluation): "
          f"{best('ours', 's_per_iter') / best('plain', 's_per_iter'):.3f}")
    print(f"ratio ours/plain, wall s/iter all inclusive: "
          f"{best('ours', 'wall_per_iter') / best('plain', 'wall_per_iter'):.3f} (noisy on a shared machine)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
