"""Exact COCO evaluation, fast: the 12 COCO stats, precision/recall arrays and per-class AP.

The numbers are pycocotools' ``COCOeval`` numbers (tests check them to 1e-9 on synthetic sets with crowds,
empty images, a class without GT, RLE and polygon predictions). The work is done by a native
implementation when one is installed:

* ``faster``: `faster-coco-eval <https://github.com/MiXaiLL76/faster_coco_eval>`_ (Apache-2.0, C++ port of
  Detectron2's ``COCOeval_opt``), a pinned dependency;
* ``detectron2``: Detectron2's own ``COCOeval_opt``, only when its compiled ops exist;
* ``pycocotools``: the reference, always available.

Inputs are checked first by :mod:`.inputs` (``load_ground_truth``, ``load_predictions``, re-exported here).
Predictions follow Detectron2's ``COCOEvaluator``: for ``segm`` the mask area (not the box area) decides
small/medium/large, for ``bbox`` the box area.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .. import compat
from ..errors import fail
from .coco_checks import TASKS, gc_paused
from .ground_truth import GroundTruth, image_size, load_ground_truth
from .predictions import Predictions, load_predictions

__all__ = [
    "STAT_NAMES",
    "TASKS",
    "BACKENDS",
    "GroundTruth",
    "Predictions",
    "TaskEval",
    "load_ground_truth",
    "load_predictions",
    "evaluate_task",
    "evaluate_tasks",
    "resolve_backend",
    "summarize",
    "to_d2_results",
]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = ("auto", "faster", "detectron2", "pycocotools")
MAX_DETS = (1, 10, 100)
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
# (is AP, IoU threshold or None = 0.50:0.95, area label, maxDets) in pycocotools' summarize() order
_STAT_SPECS = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


# ------------------------------------------------------------------------------------- evaluation
@dataclass
class TaskEval:
    """One task's evaluation.

    Attributes:
        task (str): ``bbox`` or ``segm``.
        stats (np.ndarray): the 12 COCO stats (fractions; -1 where undefined), in :data:`STAT_NAMES` order.
        precision (np.ndarray or None): ``[T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3 maxDets]``
            (None without predictions).
        recall (np.ndarray or None): ``[T, K, A, M]``.
        cat_ids (list[int]): the K category ids, sorted.
        backend (str): the implementation that ran.
        seconds (float): wall time of the evaluation.
        num_predictions (int): results evaluated.
    """

    task: str
    stats: np.ndarray
    precision: np.ndarray | None
    recall: np.ndarray | None
    cat_ids: list[int]
    backend: str
    seconds: float = 0.0
    num_predictions: int = 0

    def per_class(self) -> dict[int, tuple[float, float]]:
        """``{category id: (AP, AP50)}`` as fractions, NaN for a class without GT (Detectron2's rule)."""
        out = {}
        for k, cat in enumerate(self.cat_ids):
            if self.precision is None:
                out[cat] = (float("nan"), float("nan"))
                continue
            p = self.precision[:, :, k, 0, -1]
            p50 = p[0]
            out[cat] = (
                float(np.mean(p[p > -1])) if (p > -1).any() else float("nan"),
                float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else float("nan"),
            )
        return out


def resolve_backend(name: str = "auto") -> str:
    """``auto`` -> ``faster`` when faster-coco-eval is installed, else ``detectron2`` with compiled ops, else
    ``pycocotools``; a named backend that is not available is a UserError."""
    have = {
        "faster": importlib.util.find_spec("faster_coco_eval") is not None,
        "detectron2": compat.has_compiled_ops(),
        "pycocotools": True,
    }
    if name == "auto":
        return next(b for b in ("faster", "detectron2", "pycocotools") if have[b])
    if name not in have:
        raise fail(f"backend={name}", "unknown evaluation backend", f"use one of {', '.join(BACKENDS)}")
    if not have[name]:
        how = "pip install faster-coco-eval" if name == "faster" else compat.INSTALL_HOWTO
        raise fail(f"backend={name}", "not available here", f"{how}, or use backend=auto")
    return name


def summarize(precision: np.ndarray, recall: np.ndarray, iou_thrs: np.ndarray | None = None) -> np.ndarray:
    """pycocotools' ``COCOeval.summarize()`` without printing: the 12 stats from the accumulated arrays."""
    iou_thrs = _IOU_THRS if iou_thrs is None else iou_thrs
    areas = list(AREA_RANGES)
    stats = np.zeros(len(_STAT_SPECS))
    for n, (is_ap, iou, area, max_det) in enumerate(_STAT_SPECS):
        s = precision if is_ap else recall
        if iou is not None:
            s = s[np.where(iou == iou_thrs)[0]]
        a, m = areas.index(area), MAX_DETS.index(max_det)
        s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
        stats[n] = np.mean(s[s > -1]) if (s > -1).any() else -1
    return stats


_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # as pycocotools


def _dt_annotations(preds: Predictions, task: str) -> list[dict]:
    """What pycocotools' ``loadRes`` makes of the results (ids 1..N in file order), for one task."""
    res = preds.results
    if task == "bbox":
        return [
            {
                "id": n,
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "score": r["score"],
                "bbox": r["bbox"],
                "area": r["bbox"][2] * r["bbox"][3],
                "iscrowd": 0,
            }
            for n, r in enumerate(res, start=1)
        ]
    areas = _mask_areas([r["segmentation"] for r in res])
    return [
        {
            "id": n,
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "score": r["score"],
            "segmentation": r["segmentation"],
            "area": float(a),
            "iscrowd": 0,
        }
        for n, (r, a) in enumerate(zip(res, areas), start=1)
    ]


def _mask_areas(rles: list[dict]) -> np.ndarray:
    # Batched C calls instead of one per result. Chunks of 255: pycocotools 2.0.x's area() builds a
    # np.uint8 array of the batch length, which overflows under numpy 2 for longer lists.
    if not rles:
        return np.zeros(0)
    return np.concatenate([mask_util.area(rles[i : i + 255]) for i in range(0, len(rles), 255)])


def _gt_dataset(gt: GroundTruth, task: str) -> dict:
    anns = []
    for a in gt.dataset["annotations"]:
        a = dict(a)  # the backends add keys ('ignore', 'rle') to what they get
        if task == "segm" and not a.get("segmentation"):
            x, y, w, h = a["bbox"]  # no mask (e.g. a Label Studio rectangle): its box is the mask
            a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        anns.append(a)
    return {"images": gt.dataset["images"], "annotations": anns, "categories": gt.dataset["categories"]}


def _run_faster(gt_data: dict, dt_data: dict, task: str):
    import faster_coco_eval  # optional: resolve_backend picks another backend when it is not installed

    quiet = lambda *a, **k: None  # noqa: E731
    ev = faster_coco_eval.COCOeval_faster(
        faster_coco_eval.COCO(gt_data, print_function=quiet),
        faster_coco_eval.COCO(dt_data, print_function=quiet),
        task,
        print_function=quiet,
    )
    ev.params.maxDets = list(MAX_DETS)
    ev.evaluate()
    ev.accumulate()
    return ev.eval["precision"], ev.eval["recall"], np.asarray(ev.params.iouThrs)


def _run_pycocotools(gt_data: dict, dt_data: dict, task: str, fast_cpp: bool = False):
    evaluator_cls = COCOeval
    if fast_cpp:  # optional: Detectron2's compiled ops (resolve_backend checks they exist)
        from detectron2.evaluation.fast_eval_api import COCOeval_opt as evaluator_cls
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        cocos = []
        for data in (gt_data, dt_data):
            c = COCO()
            c.dataset = data
            c.createIndex()
            cocos.append(c)
        ev = evaluator_cls(cocos[0], cocos[1], task)
        ev.params.maxDets = list(MAX_DETS)
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"], ev.eval["recall"], np.asarray(ev.params.iouThrs)


def evaluate_task(gt: GroundTruth, preds: Predictions, task: str, backend: str = "auto") -> TaskEval:
    """Evaluate one task (``bbox`` or ``segm``) exactly as pycocotools does.

    Args:
        gt (GroundTruth): from :func:`load_ground_truth`.
        preds (Predictions): from :func:`load_predictions`.
        task (str): ``bbox`` or ``segm``; must be in ``preds.tasks``.
        backend (str): ``auto`` | ``faster`` | ``detectron2`` | ``pycocotools`` (see :func:`resolve_backend`).

    Returns:
        TaskEval: stats (all -1 without predictions), precision/recall arrays, timing.
    """
    backend = resolve_backend(backend)
    cat_ids = gt.cat_ids
    if not preds.results:  # pycocotools crashes on empty results; Detectron2 reports NaN ("no predictions")
        return TaskEval(task, -np.ones(len(STAT_NAMES)), None, None, cat_ids, backend)
    if task not in preds.tasks:
        raise fail(
            preds.source,
            f"results have no {'boxes' if task == 'bbox' else 'masks'} for task {task}",
            f"evaluate only {', '.join(preds.tasks)}",
        )
    if task == "segm":
        for img in gt.dataset["images"]:
            image_size(img, gt.source)
    tic = time.perf_counter()
    with gc_paused():
        gt_data = _gt_dataset(gt, task)
        dt_data = {
            "images": gt_data["images"],
            "annotations": _dt_annotations(preds, task),
            "categories": gt_data["categories"],
        }
        if backend == "faster":
            precision, recall, iou_thrs = _run_faster(gt_data, dt_data, task)
        else:
            precision, recall, iou_thrs = _run_pycocotools(gt_data, dt_data, task, backend == "detectron2")
    stats = summarize(precision, recall, iou_thrs)
    return TaskEval(
        task, stats, precision, recall, cat_ids, backend, time.perf_counter() - tic, len(preds.results)
    )


def evaluate_tasks(
    gt: GroundTruth, preds: Predictions, tasks: Sequence[str] | None = None, backend: str = "auto"
) -> dict[str, TaskEval]:
    """:func:`evaluate_task` for each of ``tasks`` (default: every task the predictions support)."""
    tasks = [t for t in TASKS if t in (tasks or preds.tasks)]
    return {t: evaluate_task(gt, preds, t, backend) for t in tasks}


def to_d2_results(ev: TaskEval, class_names: Sequence[str]) -> dict[str, float]:
    """Detectron2's results layout for one task, in percent, NaN where undefined.

    Keys: the 12 :data:`STAT_NAMES`, then ``AP-<class>`` (as Detectron2 writes it) and ``AP50-<class>``.
    """
    out = {name: (float(v) * 100 if v >= 0 else float("nan")) for name, v in zip(STAT_NAMES, ev.stats)}
    per_class = ev.per_class()
    for name, cat in zip(class_names, ev.cat_ids):
        out[f"AP-{name}"] = per_class[cat][0] * 100
    for name, cat in zip(class_names, ev.cat_ids):
        out[f"AP50-{name}"] = per_class[cat][1] * 100
    return out
