"""COCO evaluation time: maskseg_d2.evaluation (fast exact backend) vs pycocotools as Detectron2 calls it.

    python benchmarks/bench_eval.py                      # 5,000 images, ~20 predictions each, 3 repeats
    python benchmarks/bench_eval.py --images 500 --preds 20 --repeats 3

Both sides start from the same in-memory GT dict and results list (fresh copies made outside the timers, every
repeat) and produce the 12 COCO stats for bbox and segm. Each side's time is split the same way:

* ``load``: pycocotools ``COCO()`` + ``createIndex`` for the GT and ``loadRes`` of the results of each task (masks
  only for segm, boxes only for bbox, as Detectron2's ``COCOEvaluator(use_fast_impl=False)`` passes them); ours
  ``load_ground_truth`` + ``load_predictions`` (with its input checks: ids, polygons -> RLE, malformed masks);
* ``eval <task>``: ``COCOeval.evaluate/accumulate/summarize`` vs ``evaluate_task``.

The sides alternate over ``--repeats`` rounds (pycocotools, ours, ours, pycocotools, ...); the table gives per row the
medians and the ratio pycocotools / ours (> 1: ours is faster); the like-for-like rows are ``load`` vs ``load``,
``eval`` vs ``eval`` and ``load + eval`` vs ``load + eval``. Every repeat checks that the 12 stats of both tasks are
identical to pycocotools' (<= 1e-9); a difference exits with status 1 and names the stat.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskseg_d2.evaluation.cocoeval import evaluate_task, load_ground_truth, load_predictions

from _same import check_same_stats, exit_on_mismatch  # isort: skip
from _timing import Sample, Stopwatch, interleave, machine, ratio_table  # isort: skip

TESTS = Path(__file__).resolve().parents[1] / "tests"
TASKS = ("bbox", "segm")


def _task_copy(results: list[dict], task: str) -> list[dict]:
    out = copy.deepcopy(results)
    for r in out:
        r.pop("bbox" if task == "segm" else "segmentation", None)
    return out


def pycocotools_side(gt: dict, results: list[dict]) -> Sample:
    """What Detectron2's COCOEvaluator does with use_fast_impl=False: one GT index, loadRes + COCOeval per task."""
    g, per_task = copy.deepcopy(gt), {t: _task_copy(results, t) for t in TASKS}  # untimed copies
    watch, stats = Stopwatch(), {}
    with contextlib.redirect_stdout(io.StringIO()):
        with watch("load"):
            coco = COCO()
            coco.dataset = g
            coco.createIndex()
            dts = {t: coco.loadRes(per_task[t]) for t in TASKS}
        for task in TASKS:
            with watch(f"eval {task}"):
                ev = COCOeval(coco, dts[task], task)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            stats[task] = ev.stats
    return _totals(watch, stats)


def ours_side(gt: dict, results: list[dict], backend: str) -> Sample:
    """maskseg_d2: GT and results loaded (and checked) once, then each task evaluated."""
    g, r = copy.deepcopy(gt), copy.deepcopy(results)  # untimed copies
    watch, stats, used = Stopwatch(), {}, set()
    with watch("load"):
        ground_truth = load_ground_truth(g)
        preds = load_predictions(r, ground_truth)
    for task in TASKS:
        with watch(f"eval {task}"):
            ev = evaluate_task(ground_truth, preds, task, backend)
        stats[task] = ev.stats
        used.add(ev.backend)
    sample = _totals(watch, stats)
    sample.output["backend"] = ", ".join(sorted(used))
    return sample


def _totals(watch: Stopwatch, stats: dict) -> Sample:
    t = watch.times
    t["eval (both tasks)"] = t["eval bbox"] + t["eval segm"]
    t["load + eval"] = t["load"] + t["eval (both tasks)"]
    return Sample(t, {"stats": stats})


@exit_on_mismatch
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000, help="images in the generated GT")
    ap.add_argument("--preds", type=float, default=20.0, help="mean predictions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate (medians reported)")
    ap.add_argument("--backend", default="auto", help="ours: auto | faster | detectron2 | pycocotools")
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))  # the synthetic COCO generator is test-only code (tests/helpers)
    from helpers.synthetic import make_synthetic_coco

    print(f"machine: {machine()}", flush=True)
    tic = time.perf_counter()
    gt, results = make_synthetic_coco(args.images, args.preds, seed=args.seed)
    print(f"generated {len(gt['images'])} images, {len(gt['annotations'])} GT instances, {len(results)} "
          f"predictions in {time.perf_counter() - tic:.1f} s", flush=True)
    out = interleave({"pycocotools": lambda r: pycocotools_side(gt, results),
                      "maskseg_d2": lambda r: ours_side(gt, results, args.backend)}, args.repeats)
    worst = max(check_same_stats(a.output["stats"], b.output["stats"], names=("pycocotools", "maskseg_d2"))
                for a, b in zip(out["pycocotools"], out["maskseg_d2"]))
    print(f"\n{len(gt['images'])} images, {len(results)} predictions; maskseg_d2 backend: "
          f"{out['maskseg_d2'][0].output['backend']}; {machine()}")
    print(ratio_table(out, "pycocotools", "maskseg_d2", [
        ("load (GT + results)", "load"), ("eval bbox", "eval bbox"), ("eval segm", "eval segm"),
        ("eval (both tasks)", "eval (both tasks)"), ("load + eval (both tasks)", "load + eval")]))
    print(f"\nstats identical to pycocotools in all {args.repeats} repeats (max abs diff {worst:.1e} <= 1e-9)")
    stats = out["maskseg_d2"][0].output["stats"]
    for task in TASKS:
        print(f"{task} AP={stats[task][0] * 100:.2f} AP50={stats[task][1] * 100:.2f} AR100={stats[task][8] * 100:.2f}")


if __name__ == "__main__":
    main()
