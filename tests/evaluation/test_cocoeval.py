"""The 12 COCO stats equal pycocotools' COCOeval to 1e-9, whichever backend computes them."""

import copy
import math

import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskseg_d2.errors import UserError
from maskseg_d2.evaluation import cocoeval
from maskseg_d2.evaluation.cocoeval import (
    STAT_NAMES,
    evaluate_task,
    evaluate_tasks,
    load_ground_truth,
    load_predictions,
    resolve_backend,
    to_d2_results,
)
from helpers.synthetic import make_synthetic_coco

BACKENDS = ["faster", "pycocotools"] + (["detectron2"] if cocoeval.compat.has_compiled_ops() else [])

CASES = {
    "default": dict(num_images=25, preds_per_image=12, seed=0),
    "crowds": dict(num_images=25, preds_per_image=12, seed=1, crowd_fraction=0.3),
    "mostly_empty_images": dict(num_images=25, preds_per_image=8, seed=2, empty_fraction=0.6),
    "no_small_objects": dict(num_images=20, preds_per_image=8, seed=3, small_objects=False),
    "polygon_predictions": dict(num_images=20, preds_per_image=10, seed=4, polygon_fraction=1.0),
    "over_100_per_image": dict(num_images=3, preds_per_image=150, seed=5),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_stats_equal_pycocotools(case, backend, reference, polygons_to_rle, assert_stats_equal):
    gt, results = make_synthetic_coco(**CASES[case])
    if case == "over_100_per_image":
        for r in results:
            r["score"] = round(r["score"], 1)  # many ties: order must follow the file, as in pycocotools
    ref_results = polygons_to_rle(results, gt)
    g = load_ground_truth(gt)
    p = load_predictions(results, g)
    for task in ("bbox", "segm"):
        ref = reference(gt, ref_results, task)
        ours = evaluate_task(g, p, task, backend)
        assert ours.backend == backend
        assert_stats_equal(ours.stats, ref.stats)
        valid = ref.eval["precision"] > -1
        np.testing.assert_array_equal(ours.precision > -1, valid)
        np.testing.assert_allclose(ours.precision[valid], ref.eval["precision"][valid], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours.recall, ref.eval["recall"], rtol=0, atol=1e-9)
    if case == "no_small_objects":
        assert ours.stats[STAT_NAMES.index("APs")] == -1 and ours.stats[STAT_NAMES.index("ARs")] == -1


def test_uncompressed_rle_predictions_equal_compressed(reference, assert_stats_equal):
    gt, results = make_synthetic_coco(num_images=10, preds_per_image=6, seed=7)
    uncompressed = copy.deepcopy(results)
    for r in uncompressed:
        m = mask_util.decode(r["segmentation"]).flatten(order="F")
        edges = np.flatnonzero(np.diff(m)) + 1
        counts = np.diff(np.concatenate([[0], edges, [m.size]])).tolist()
        r["segmentation"] = {"size": r["segmentation"]["size"], "counts": ([0] if m[0] else []) + counts}
    g = load_ground_truth(gt)
    ours = evaluate_task(g, load_predictions(uncompressed, g), "segm")
    assert_stats_equal(ours.stats, reference(gt, results, "segm").stats)


def test_annotation_id_zero_is_renumbered(reference, assert_stats_equal):
    # pycocotools stores matched GT ids and reads 0 as "unmatched": a hit on GT id 0 would count as a miss.
    gt, results = make_synthetic_coco(num_images=8, preds_per_image=6, seed=8)
    zero_based = copy.deepcopy(gt)
    for a in zero_based["annotations"]:
        a["id"] -= 1
    g = load_ground_truth(zero_based, name="ls_export.json")
    assert any("renumbered" in w for w in g.warnings)
    ours = evaluate_task(g, load_predictions(results, g), "bbox")
    assert_stats_equal(ours.stats, reference(gt, results, "bbox").stats)


def test_missing_area_and_iscrowd_are_filled(reference, assert_stats_equal):
    gt, results = make_synthetic_coco(num_images=6, preds_per_image=5, seed=9, crowd_fraction=0.0)
    bare = copy.deepcopy(gt)
    for a in bare["annotations"]:
        del a["area"], a["iscrowd"]
    g = load_ground_truth(bare)
    assert len(g.warnings) == 2
    # the filled area is the mask area; pycocotools on GT whose area is the mask area agrees
    sizes = {i["id"]: (i["height"], i["width"]) for i in gt["images"]}
    for a in gt["annotations"]:
        a["area"] = float(
            mask_util.area(mask_util.merge(mask_util.frPyObjects(a["segmentation"], *sizes[a["image_id"]])))
        )
    ours = evaluate_task(g, load_predictions(results, g), "segm")
    assert_stats_equal(ours.stats, reference(gt, results, "segm").stats)


def test_empty_results_are_undefined_not_zero():
    gt, _ = make_synthetic_coco(num_images=4, preds_per_image=3, seed=10)
    g = load_ground_truth(gt)
    p = load_predictions([], g)
    assert p.warnings and "no predictions" in p.warnings[0]
    evs = evaluate_tasks(g, p)
    assert set(evs) == {"bbox", "segm"}
    res = to_d2_results(evs["segm"], g.class_names)
    assert all(math.isnan(res[k]) for k in STAT_NAMES)
    assert math.isnan(res["AP-class2"])


def test_d2_layout_and_per_class_ap(reference):
    gt, results = make_synthetic_coco(num_images=15, preds_per_image=8, seed=11)
    g = load_ground_truth(gt)
    ev = evaluate_task(g, load_predictions(results, g), "segm")
    res = to_d2_results(ev, g.class_names)
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    assert list(res)[:12] == list(STAT_NAMES)
    assert [k for k in res if k.startswith("AP-")] == [f"AP-{n}" for n in names]
    assert [k for k in res if k.startswith("AP50-")] == [f"AP50-{n}" for n in names]
    ref = reference(gt, results, "segm")
    for k, name in enumerate(names):  # Detectron2's per-category formula on pycocotools' precision
        p = ref.eval["precision"][:, :, k, 0, -1]
        expect = np.mean(p[p > -1]) * 100 if (p > -1).any() else float("nan")
        assert (math.isnan(expect) and math.isnan(res[f"AP-{name}"])) or abs(
            res[f"AP-{name}"] - expect
        ) < 1e-9
    assert math.isnan(res["AP-unused"])  # the class without GT
    assert abs(res["AP"] - ref.stats[0] * 100) < 1e-9 and abs(res["ARl"] - ref.stats[11] * 100) < 1e-9


def test_resolve_backend():
    assert resolve_backend("auto") == "faster"  # pinned in requirements.txt
    assert resolve_backend("pycocotools") == "pycocotools"
    with pytest.raises(UserError, match="unknown evaluation backend"):
        resolve_backend("turbo")
    if not cocoeval.compat.has_compiled_ops():
        with pytest.raises(UserError, match="not available here"):
            resolve_backend("detectron2")


def _gt():
    gt, results = make_synthetic_coco(num_images=3, preds_per_image=3, seed=12)
    return gt, results


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda gt, r: r[0].update(image_id=999), "refer to image ids not in the GT"),
        (lambda gt, r: r[0].update(category_id=0), "category ids [0] are not in the GT categories"),
        (lambda gt, r: r[0].pop("score"), "has no 'score'"),
        (lambda gt, r: r[0]["segmentation"].update(counts="not an RLE!"), "malformed mask"),
        (lambda gt, r: r[0]["segmentation"].update(size=[5, 5]), "differs from the image size"),
        (lambda gt, r: r[0].update(segmentation=[[1, 2, 3]]), "polygon mask needs lists of >= 6 numbers"),
        (lambda gt, r: r[0].update(bbox=[1, 2, -3, 4]), "is not [x, y, width, height]"),
        (lambda gt, r: r[0].pop("segmentation"), "have no 'segmentation' while the others do"),
    ],
)
def test_bad_predictions_are_one_line_user_errors(mutate, message):
    gt, results = _gt()
    mutate(gt, results)
    g = load_ground_truth(gt)
    with pytest.raises(UserError) as e:
        load_predictions(results, g, name="preds.json")
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("preds.json: ")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda gt: gt.pop("categories"), "the GT has no categories"),
        (lambda gt: gt.update(categories=[]), "the GT has no categories"),
        (lambda gt: gt.pop("annotations"), "no 'annotations' list"),
        (lambda gt: gt["annotations"][0].update(category_id=77), "has category_id 77"),
        (lambda gt: gt["annotations"][0].update(image_id=77), "refers to image id 77"),
        (lambda gt: gt["annotations"][0].update(segmentation=[[1, 2]]), "neither polygons"),
        (lambda gt: gt["annotations"][0].update(bbox=[1, 2, 3]), "is not [x, y, width, height]"),
    ],
)
def test_bad_ground_truth_is_a_one_line_user_error(mutate, message):
    gt, _ = _gt()
    mutate(gt)
    with pytest.raises(UserError) as e:
        load_ground_truth(gt, name="gt.json")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_results_file_given_as_gt_is_explained(tmp_path, write_json):
    gt, _ = _gt()
    g = load_ground_truth(gt)
    with pytest.raises(UserError, match="looks like a GT file"):
        load_predictions(write_json("swapped.json", gt), g)
    with pytest.raises(UserError, match="invalid JSON"):
        (tmp_path / "broken.json").write_text("[{")
        load_predictions(str(tmp_path / "broken.json"), g)
