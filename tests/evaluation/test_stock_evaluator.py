"""Our ``ExactCOCOEvaluator`` vs Detectron2's stock ``COCOEvaluator(use_fast_impl=False)`` (pycocotools) on the
predictions of trained models: the same ``process()`` calls go to both, and the results files, all 12 COCO stats
of bbox and segm, and every AP key Detectron2 reports (``AP-<class>`` included) agree to 1e-9.

The model is the run of tests/engine/test_learning.py, which learned its 4 images: confident true detections, then
(score threshold 0, 20 per image) low-score false ones. The shared 4-iteration run would not do: its bbox AP is 0.
Its 4 images are scored twice: as our importer registered them (class ids 0..K-1, nothing to un-map), and as the
generator's truth.json registered by Detectron2's own ``register_coco_instances`` (dataset ids 1, 2), where both
evaluators must map the model's class indices back to dataset ids.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset
from detectron2.modeling import build_model

from maskseg_d2.engine.checkpoint import SafeCheckpointer
from maskseg_d2.engine.run import Run
from maskseg_d2.engine.train import overfit_subset
from maskseg_d2.evaluation import ExactCOCOEvaluator

TASKS = ("bbox", "segm")


class _StockWithStats(COCOEvaluator):
    """Detectron2's COCOEvaluator, unchanged, that also keeps COCOeval's 12 stats (its results hold 6)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats: dict[str, np.ndarray] = {}

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        assert coco_eval is not None, f"stock COCOEvaluator got no {iou_type} predictions"
        self.stats[iou_type] = np.array(coco_eval.stats)
        return super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)


class _Both(DatasetEvaluator):
    """Feeds the same inputs/outputs to each evaluator; returns their results in order (one inference pass)."""

    def __init__(self, *evaluators: DatasetEvaluator):
        self.evaluators = evaluators

    def reset(self):
        for e in self.evaluators:
            e.reset()

    def process(self, inputs, outputs):
        for e in self.evaluators:
            e.process(inputs, outputs)

    def evaluate(self):
        return [e.evaluate() for e in self.evaluators]


def _overfit_split(run: Run, demo_root, tmp_path) -> str:
    """The split the run evaluated on: its 4 images as our importer read them (category ids 0, 1: no un-mapping)."""
    return overfit_subset(run.dataset, int(run.cfg.overfit_images)).val_name


def _truth_of_the_split(run: Run, demo_root, tmp_path) -> str:
    """The generator's truth.json cut to the same 4 images, registered by Detectron2's ``register_coco_instances``:
    category ids 1, 2 -> contiguous 0, 1, so both evaluators map the model's classes back to dataset ids."""
    names = {r["file_name"].rsplit("/", 1)[-1] for r in DatasetCatalog.get(_overfit_split(run, demo_root, tmp_path))}
    truth = json.loads((demo_root / "truth.json").read_text())
    images = [im for im in truth["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    cut = {**truth, "images": images, "annotations": [a for a in truth["annotations"] if a["image_id"] in ids]}
    (tmp_path / "truth_cut.json").write_text(json.dumps(cut))
    name = "demo_truth_overfit"
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)
    register_coco_instances(name, {}, str(tmp_path / "truth_cut.json"), str(demo_root / "images"))
    DatasetCatalog.get(name)  # loads the json: sets thing_classes and the id mapping in the metadata
    assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert MetadataCatalog.get(name).thing_classes == run.thing_classes == ["car", "sign board"]
    return name


def _evaluate_both(run: Run, name: str, out):
    """Predict dataset ``name`` with the run's model and score the same outputs both ways."""
    model = build_model(run.d2cfg)
    SafeCheckpointer(model).load(run.d2cfg.MODEL.WEIGHTS)
    ours = ExactCOCOEvaluator(name, str(out / "ours"), tasks=TASKS, distributed=False)
    stock = _StockWithStats(name, tasks=TASKS, distributed=False, output_dir=str(out / "stock"),
                            use_fast_impl=False)
    ours_results, stock_results = inference_on_dataset(
        model, build_detection_test_loader(run.d2cfg, name), _Both(ours, stock))
    return ours, stock, ours_results, stock_results


@pytest.mark.slow
@pytest.mark.parametrize("dataset", [_overfit_split, _truth_of_the_split])
def test_exact_evaluator_equals_stock_coco_evaluator(dataset, overfit_run, demo_root, tmp_path):
    run = Run.open(str(overfit_run[0]), device="cpu")
    ours, stock, ours_results, stock_results = _evaluate_both(run, dataset(run, demo_root, tmp_path), tmp_path)

    # the same detections, unmapped to the same dataset category ids (both write the COCO results file)
    ours_json = json.loads((tmp_path / "ours" / "coco_instances_results.json").read_text())
    stock_json = json.loads((tmp_path / "stock" / "coco_instances_results.json").read_text())
    assert ours_json == stock_json and len(ours_json) > 0
    assert {r["category_id"] for r in ours_json} <= {c["id"] for c in ours.ground_truth.dataset["categories"]}

    for task in TASKS:
        # a model that found its objects (AP measured 60-65), so that equal numbers mean something
        assert 30 < ours_results[task]["AP"] <= 100, (task, ours_results[task])
        np.testing.assert_allclose(ours.evaluations[task].stats, stock.stats[task], rtol=0, atol=1e-9,
                                   err_msg=task)
        # every key Detectron2 reports (6 AP stats, AP-<class>), in percent, NaN where undefined
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-car", "AP-sign board"} <= set(stock_results[task])
        for name, expected in stock_results[task].items():
            got = ours_results[task][name]
            assert (math.isnan(got) and math.isnan(expected)) or abs(got - expected) <= 1e-9, (task, name, got,
                                                                                                  expected)
