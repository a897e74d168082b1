"""``make demo``'s training command, the old recipe vs today's, interleaved: wall time and the AP each reaches.

    python benchmarks/bench_demo.py [--repeats 2] [--images 80] [hydra overrides for both sides ...]

Both sides run what ``make demo`` runs once its data is there: ``python tools/train.py experiment=demo`` (train,
evaluate on the validation split, draw ``vis/``, the default TensorBoard logger), as a child process on the same
generated demo set (``make_demo_dataset``: the same 80 images ``make demo`` builds), each into its own run dir:

* ``old``: the recipe ``make demo`` had until issue 18 (``OLD_RECIPE`` below, as overrides on top of today's
  ``experiment=demo``): ResNet-18 FPN with 128-channel FPN and mask head in fp32, 600 iterations at 0.02 with 100
  warm-up;
* ``new``: ``configs/experiment/demo.yaml`` as committed.

Timed: the wall time of the whole command (Python start, config, model, data, training, evaluation, drawing).
Read from each run dir: the final ``segm/AP`` and ``bbox/AP`` (``metrics.json``) and the median seconds per
iteration Detectron2 logged. The sides alternate (old new, new old, ...). Printed: each run's line, the medians,
new / old wall (goal <= 0.5) with the per-round ratios, and each side's AP (goal for new: segm AP >= 60).

Same output: the recipes differ on purpose, so the two sides are not expected to agree; what must hold is that each
recipe is seeded: every round of a side must end with the same final loss and the same AP values, bit for bit.
A difference exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maskseg_d2.demo import make_demo_dataset

from _same import Mismatch, exit_on_mismatch  # isort: skip
from _timing import Sample, interleave, machine, median, paired_ratios  # isort: skip

ROOT = Path(__file__).resolve().parents[1]

# make demo's recipe before issue 18 (commit 805c7bd): configs/experiment/demo.yaml + configs/model/r18_fpn_scratch.yaml
# then, written as the values of every key the new recipe changes.
OLD_RECIPE = [
    "model.d2.MODEL.FPN.OUT_CHANNELS=128",
    "model.d2.MODEL.ROI_MASK_HEAD.CONV_DIM=128",
    "solver.max_iter=600",
    "solver.base_lr=0.02",
    "solver.warmup_iters=100",
    "solver.steps=[0.7,0.9]",
    "solver.cpu_amp=false",
]
REPORTED = ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The last evaluation's AP values, the last logged loss and the median logged seconds per iteration."""
    rows = [json.loads(line) for line in (run_dir / "metrics.json").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "segm/AP" in r]
    if not evals:
        raise Mismatch(f"{run_dir}: no evaluation in metrics.json")
    out = {k: float(evals[-1][k]) for k in REPORTED}
    losses = [r for r in rows if "total_loss" in r]
    out["final total_loss"] = float(losses[-1]["total_loss"])
    out["iterations"] = int(max(r["iteration"] for r in losses)) + 1
    times = [r["time"] for r in rows if "time" in r]
    out["s/iter"] = statistics.median(times) if times else float("nan")
    return out


def run_side(name: str, recipe: list[str], data: Path, runs: Path, extra: list[str]):
    def fn(r: int) -> Sample:
        run_dir = runs / f"{name}_{r}"
        cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "experiment=demo", f"dataset.root={data}",
               f"hydra.run.dir={run_dir}", *recipe, *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{name}: {' '.join(cmd[1:])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return Sample({"wall": wall}, final_metrics(run_dir))
    return fn


@exit_on_mismatch
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="rounds (each runs both recipes)")
    parser.add_argument("--images", type=int, default=80, help="generated demo images (make demo: 80)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data and run dirs (default: temp)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides, e.g. solver.max_iter=20 "
                                                     "(a quick check of the script; the goal is measured without)")
    args = parser.parse_args()
    print(machine())
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    data = work / "demo"
    make_demo_dataset(data, num_images=args.images)
    sides = {"old": run_side("old", OLD_RECIPE, data, work / "runs", args.overrides),
             "new": run_side("new", [], data, work / "runs", args.overrides)}
    res = interleave(sides, args.repeats)

    for name, samples in res.items():  # seeded: every round of a recipe ends the same, bit for bit
        first = samples[0].output
        for r, s in enumerate(samples[1:], start=2):
            diff = {k: (first[k], s.output[k]) for k in first if k not in ("s/iter",) and first[k] != s.output[k]}
            if diff:
                raise Mismatch(f"{name}: round {r} differs from round 1 (not deterministic): {diff}")

    old, new = median(res["old"], "wall"), median(res["new"], "wall")
    per = paired_ratios(res["new"], res["old"], "wall")  # new / old per round
    print(f"\n{len(res['old'])} rounds, {os.cpu_count()} CPUs; data: {args.images} generated demo images"
          f"{'; overrides: ' + ' '.join(args.overrides) if args.overrides else ''}\n")
    print("| recipe | wall (s, median) | iterations | s/iter (median) | segm AP | segm AP50 | bbox AP | bbox AP50 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, wall in (("old", old), ("new", new)):
        m, per_iter = res[name][0].output, statistics.median(s.output["s/iter"] for s in res[name])
        print(f"| {name} | {wall:.1f} | {m['iterations']} | {per_iter:.3f}"
              f" | {m['segm/AP']:.1f} | {m['segm/AP50']:.1f} | {m['bbox/AP']:.1f} | {m['bbox/AP50']:.1f} |")
    print(f"\nnew / old wall: **{new / old:.2f}x** (per round: {', '.join(f'{p:.2f}' for p in per)}); "
          f"goal <= 0.5 with segm AP >= 60: "
          f"{'met' if new / old <= 0.5 and res['new'][0].output['segm/AP'] >= 60 else 'NOT met'}")
    print("every round of each recipe ended with the same loss and AP (seeded)")


if __name__ == "__main__":
    main()
