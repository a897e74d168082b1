"""COCO evaluation time: maskseg_d2.evaluation (fast exact backend) vs pycocotools as Detectron2 calls it.

    python benchmarks/bench_eval.py                      # 5,000 images, ~20 predictions each
    python benchmarks/bench_eval.py --images 500 --preds 20

Both sides start from the same in-memory GT dict and results list (copies made outside the timers) and
produce the 12 COCO stats for bbox and segm; the script checks they are identical (<= 1e-9) and prints the
ratio. Our side includes its input checks (polygon -> RLE, ids, malformed masks).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskseg_d2.evaluation.cocoeval import evaluate_task, load_ground_truth, load_predictions

TESTS = Path(__file__).resolve().parents[1] / "tests"


def pycocotools_stats(gt: dict, results: list[dict], task: str) -> np.ndarray:
    """What Detectron2's COCOEvaluator does with use_fast_impl=False (boxes dropped for segm)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _task_copy(results: list[dict], task: str) -> list[dict]:
    out = copy.deepcopy(results)
    for r in out:
        r.pop("bbox" if task == "segm" else "segmentation", None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000, help="images in the generated GT")
    ap.add_argument("--preds", type=float, default=20.0, help="mean predictions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="auto", help="ours: auto | faster | detectron2 | pycocotools")
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))  # the synthetic COCO generator is test-only code (tests/helpers)
    from helpers.synthetic import make_synthetic_coco

    tic = time.perf_counter()
    gt, results = make_synthetic_coco(args.images, args.preds, seed=args.seed)
    print(
        f"generated {len(gt['images'])} images, {len(gt['annotations'])} GT instances, {len(results)} "
        f"predictions in {time.perf_counter() - tic:.1f} s  ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()})",
        flush=True,
    )

    ref_times, ref_stats = {}, {}
    for task in ("bbox", "segm"):
        g, r = copy.deepcopy(gt), _task_copy(results, task)
        tic = time.perf_counter()
        ref_stats[task] = pycocotools_stats(g, r, task)
        ref_times[task] = time.perf_counter() - tic
        print(f"pycocotools {task}: {ref_times[task]:.2f} s", flush=True)

    g_in, r_in = copy.deepcopy(gt), copy.deepcopy(results)
    tic = time.perf_counter()
    ground_truth = load_ground_truth(g_in)
    preds = load_predictions(r_in, ground_truth)
    check_time = time.perf_counter() - tic
    ours, our_times = {}, {}
    for task in ("bbox", "segm"):
        tic = time.perf_counter()
        ev = evaluate_task(ground_truth, preds, task, args.backend)
        our_times[task], ours[task] = time.perf_counter() - tic, ev.stats
        print(f"maskseg_d2 ({ev.backend}) {task}: {our_times[task]:.2f} s", flush=True)

    print()
    print("| task | pycocotools (s) | maskseg_d2 (s) | speed-up | max abs diff of the 12 stats |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for task in ("bbox", "segm"):
        diff = float(np.max(np.abs(ours[task] - ref_stats[task])))
        worst = max(worst, diff)
        print(
            f"| {task} | {ref_times[task]:.2f} | {our_times[task]:.2f} "
            f"| {ref_times[task] / our_times[task]:.1f}x | {diff:.1e} |"
        )
    total_ref, total_ours = sum(ref_times.values()), sum(our_times.values()) + check_time
    print(
        f"| both, with our input checks ({check_time:.2f} s) | {total_ref:.2f} | {total_ours:.2f} | "
        f"{total_ref / total_ours:.1f}x | {worst:.1e} |"
    )
    print(f"\nstats identical to pycocotools (<= 1e-9): {'yes' if worst <= 1e-9 else 'NO'}")
    for task in ("bbox", "segm"):
        print(
            f"{task} AP={ours[task][0] * 100:.2f} AP50={ours[task][1] * 100:.2f} "
            f"AR100={ours[task][8] * 100:.2f}"
        )
    sys.exit(0 if worst <= 1e-9 else 1)


if __name__ == "__main__":
    main()
