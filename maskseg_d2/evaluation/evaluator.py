"""``ExactCOCOEvaluator``: Detectron2's COCOEvaluator with the fast exact evaluation of :mod:`.cocoeval`.

Only the scoring step is replaced (``_eval_predictions``): inference, the GT conversion and the files
Detectron2 writes (``coco_instances_results.json``, ``<dataset>_coco_format.json``) stay Detectron2's. The
results keep Detectron2's layout and keys ("AP", "AP-<class>", percent, NaN where undefined) and add the
other six COCO stats (AP... ARl) and ``AP50-<class>``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from typing import Sequence

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from .cocoeval import (
    TASKS,
    GroundTruth,
    Predictions,
    TaskEval,
    evaluate_task,
    load_ground_truth,
    load_predictions,
    resolve_backend,
    to_d2_results,
)
from .tables import format_ap_table

__all__ = ["ExactCOCOEvaluator"]

logger = logging.getLogger(__name__)


class ExactCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator whose AP equals pycocotools' exactly, computed by the fastest available backend.

    After :meth:`evaluate`, ``ground_truth``, ``predictions`` and ``evaluations`` (task -> TaskEval) hold
    what the report (tables, plots, confusion matrix, worst images) needs, so nothing is evaluated twice.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str,
        tasks: Sequence[str] = ("bbox", "segm"),
        distributed: bool = True,
        backend: str = "auto",
    ) -> None:
        """
        Args:
            dataset_name (str): a registered dataset.
            output_dir (str): where Detectron2 writes the GT conversion and ``coco_instances_results.json``.
            tasks (tuple[str]): ``bbox`` and/or ``segm``.
            distributed (bool): gather predictions from all ranks (Detectron2's meaning).
            backend (str): see :func:`~maskseg_d2.evaluation.cocoeval.resolve_backend`.
        """
        if not hasattr(MetadataCatalog.get(dataset_name), "json_file"):
            cache = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
            if os.path.exists(cache):
                os.remove(cache)  # Detectron2 would reuse it even after the annotations changed
        self._backend = resolve_backend(backend)
        super().__init__(
            dataset_name,
            tasks=tuple(tasks),
            distributed=distributed,
            output_dir=output_dir,
            use_fast_impl=False,
        )
        self.ground_truth: GroundTruth | None = None
        self.predictions: Predictions | None = None
        self.evaluations: dict[str, TaskEval] = {}

    def _eval_predictions(self, predictions, img_ids=None):
        if img_ids is not None:  # evaluating a subset of images: Detectron2's own (slower) path
            return super()._eval_predictions(predictions, img_ids=img_ids)
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        self._unmap_category_ids(coco_results)
        if self._output_dir:
            with open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
                json.dump(coco_results, f)
        if not self._do_evaluation:
            logger.info("Annotations are not available for evaluation.")
            return
        self.ground_truth = load_ground_truth(self._coco_api.dataset, name=str(self._metadata.json_file))
        self.predictions = load_predictions(coco_results, self.ground_truth, name="model predictions")
        class_names = self.ground_truth.class_names
        tasks = [t for t in sorted(self._tasks or TASKS) if t in self.predictions.tasks]
        if len(tasks) < len(self._tasks or ()):
            logger.warning("predictions have no %s: evaluated %s only", "masks", ", ".join(tasks))
        for task in tasks:
            ev = evaluate_task(self.ground_truth, self.predictions, task, self._backend)
            self.evaluations[task] = ev
            self._results[task] = to_d2_results(ev, class_names)
            logger.info(
                "Evaluation results for %s (%s, %.2fs):\n%s",
                task,
                ev.backend,
                ev.seconds,
                format_ap_table({task: self._results[task]}),
            )

    def _unmap_category_ids(self, coco_results: list[dict]) -> None:
        """Contiguous class indices -> dataset category ids, as Detectron2 does (with a clear error)."""
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if not mapping:
            return
        reverse = {v: k for k, v in mapping.items()}
        for result in coco_results:
            if result["category_id"] not in reverse:
                raise ValueError(
                    f"A prediction has class={result['category_id']}, but the dataset only has "
                    f"{len(reverse)} classes (ids 0..{len(reverse) - 1}): is NUM_CLASSES right?"
                )
            result["category_id"] = reverse[result["category_id"]]
