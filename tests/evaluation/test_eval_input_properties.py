"""Property: a mutated GT / results pair never crashes the evaluation and bad values are never silent.

A small valid pair (polygon, compressed and uncompressed RLE masks in the GT; RLE and polygon masks in
the results) is generated once; hypothesis applies one or two mutations to the GT or the results -- delete
a key or list item, replace a value by another JSON type, make a number NaN / infinite / huge / an int
beyond float range, cut or extend an RLE, cut the file -- and runs what ``tools/eval.py gt= pred=`` runs
(load, check, evaluate with the default backend, confusion matrix, worst images). Whatever happens must be:

* a :class:`~maskseg_d2.errors.UserError` whose message is one line naming the file; or
* a finished evaluation (never another exception, never a crash in C code), with the inputs unmodified;
* and a NaN / infinite number or a cut / extended RLE in anything the evaluation reads is reported
  (an error, or a counted repair such as renumbered annotation ids), never evaluated silently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.json_mutations import Path_, is_number, json_paths, mutate, path_in
from pycocotools import mask as mask_util

from maskseg_d2.errors import UserError
from maskseg_d2.evaluation.cocoeval import evaluate_tasks, load_ground_truth, load_predictions
from maskseg_d2.evaluation.report import write_report
from helpers.synthetic import make_synthetic_coco

SETTINGS = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OTHER_TYPES = [None, True, False, "x", "12.5", [], {}, ["x"], {"k": "v"}, [[1, 2]]]
INVALID_NUMBERS = {
    "nan": lambda v: math.nan,
    "inf": lambda v: math.inf if v >= 0 else -math.inf,
    "huge": lambda v: 1e15,
    "far negative": lambda v: -1e15,
    "beyond float": lambda v: 10**400,
}
KINDS = ["delete", "change type", "change type", "invalid number", "invalid number", "invalid number",
         "cut RLE", "extend RLE", "cut file"]
UNREAD_KEYS = {"file_name", "supercategory"}  # not read by the evaluation (a bad file_name skips a drawing)


def _pair() -> tuple[dict, list]:
    gt, preds = make_synthetic_coco(num_images=3, preds_per_image=4, seed=7, crowd_fraction=0.3,
                                    polygon_fraction=0.4)
    ann = next(a for a in gt["annotations"] if isinstance(a["segmentation"], list))
    img = next(i for i in gt["images"] if i["id"] == ann["image_id"])
    rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], img["height"], img["width"]))
    ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}  # a compressed GT mask
    kinds = {type(a["segmentation"]).__name__ + str(a["iscrowd"]) for a in gt["annotations"]}
    assert {"list0", "dict0", "dict1"} <= kinds and {type(p["segmentation"]) for p in preds} == {list, dict}
    return gt, preds


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_props")
    gt, preds = _pair()
    for img in gt["images"]:  # the worst images are drawn too
        cv2.imwrite(str(root / img["file_name"]), np.full((img["height"], img["width"], 3), 80, np.uint8))
    return root, gt, preds


# ------------------------------------------------------------------------------------------ mutations


@st.composite
def mutation(draw, doc: Any) -> tuple[str, Path_, Any]:
    """(kind, path, argument) of one mutation applicable to ``doc``."""
    paths = json_paths(doc)
    kind = draw(st.sampled_from(KINDS))
    numbers = [p for p, v in paths if is_number(v)]
    rles = [p for p, v in paths if p[-1] == "counts" and isinstance(v, (str, list)) and v]
    if kind == "delete" and paths:
        return kind, draw(path_in([p for p, _ in paths])), None
    if kind == "change type" and paths:
        return kind, draw(path_in([p for p, _ in paths])), draw(st.sampled_from(OTHER_TYPES))
    if kind == "invalid number" and numbers:
        return kind, draw(path_in(numbers)), draw(st.sampled_from(sorted(INVALID_NUMBERS)))
    if kind in ("cut RLE", "extend RLE") and rles:
        return kind, draw(st.sampled_from(rles)), draw(st.floats(0.0, 0.98))
    return "cut file", (), draw(st.floats(0.0, 0.99))


def apply(doc: Any, kind: str, path: Path_, arg: Any) -> Any:
    """A mutated copy of ``doc``; ``cut file`` returns the cut JSON text instead."""
    return mutate(doc, kind, path, arg, INVALID_NUMBERS, cut_file="cut file")


def _must_report(mutations: list[tuple[str, Path_, Any]]) -> bool:
    """A NaN/inf or a changed RLE in something the evaluation reads cannot be evaluated silently."""
    return any((kind == "invalid number" and arg in ("nan", "inf") and not UNREAD_KEYS & set(map(str, path)))
               or kind in ("cut RLE", "extend RLE") for kind, path, arg in mutations)


# ------------------------------------------------------------------------------------------ property


def run_evaluation(root: Path, gt: Any, preds: Any) -> list[str]:
    """What tools/eval.py gt= pred= runs; a document given as text is read from a file. -> warnings."""
    sources = []
    for name, doc in (("gt.json", gt), ("pred.json", preds)):
        if isinstance(doc, str):
            (root / name).write_text(doc)
            doc = str(root / name)
        sources.append(doc)
    g = load_ground_truth(sources[0], name="gt.json")
    p = load_predictions(sources[1], g, name="pred.json")
    evaluations = evaluate_tasks(g, p)
    report = write_report(g, p, evaluations, str(root / "out"), image_root=str(root), num_worst=2,
                          plots=False)
    for ev in evaluations.values():
        assert ev.stats.shape == (12,) and np.all((ev.stats == -1) | ((ev.stats >= 0) & (ev.stats <= 1)))
    assert report.markdown
    return g.warnings + p.warnings


def _check(root: Path, gt: Any, preds: Any, mutations: list) -> None:
    before = [json.dumps(d) for d in (gt, preds)]
    try:
        warnings = run_evaluation(root, gt, preds)
    except UserError as e:
        message = str(e)
        assert "\n" not in message and message.split(": ")[0].endswith(("gt.json", "pred.json")), message
        return
    finally:
        assert [json.dumps(d) for d in (gt, preds)] == before, "the inputs were modified"
    assert not _must_report(mutations) or warnings, f"evaluated silently after {mutations}"


def test_mutated_gt_and_results_fail_loudly_or_evaluate(pair):
    root, gt, preds = pair

    @SETTINGS
    @given(st.data())
    def run(data):
        docs = {"gt": gt, "pred": preds}
        target = data.draw(st.sampled_from(["gt", "gt", "pred"]), label="mutated")  # GT has more fields
        mutations = []
        for _ in range(data.draw(st.integers(1, 2), label="number of mutations")):
            kind, path, arg = data.draw(mutation(docs[target]))
            mutations.append((target, kind, path, arg))
            docs[target] = apply(docs[target], kind, path, arg)
            if isinstance(docs[target], str) or not json_paths(docs[target]):
                break  # the file was cut, or nothing is left to mutate
        _check(root, docs["gt"], docs["pred"], [m[1:] for m in mutations])

    run()


REGRESSIONS = [  # inputs that crashed tools/eval.py (traceback or segfault) or were evaluated silently
    ("gt", "set", ("annotations", "POLY", "segmentation", 0, 0), math.nan),  # segfault in faster-coco-eval
    ("gt", "set", ("annotations", "POLY", "segmentation", 0, 3), 1e15),
    ("gt", "set", ("images", 1, "id"), [1]),
    ("gt", "set", ("annotations", 0, "image_id"), [1]),
    ("gt", "set", ("categories", 0, "id"), [1]),
    ("gt", "set", ("annotations", 0, "area"), "big"),
    ("gt", "set", ("annotations", 0, "iscrowd"), "yes"),
    ("gt", "cut RLE", None, 0.5),  # pixels left unset
    ("pred", "set", (0, "image_id"), [1]),
    ("pred", "extend RLE", None, 0),  # past the mask
    ("pred", "set", (0, "bbox"), [1e15, 1, 2, 3]),
    ("pred", "set", (0, "score"), "0.9"),
]


@pytest.mark.parametrize("target, kind, path, arg", REGRESSIONS)
def test_known_bad_inputs_are_user_errors(pair, target, kind, path, arg):
    root, gt, preds = pair
    docs = {"gt": gt, "pred": preds}
    if path is None:  # the first compressed RLE of that document
        path = next(p for p, v in json_paths(docs[target]) if p[-1] == "counts" and isinstance(v, str))
    if "POLY" in path:  # the first annotation with a polygon mask
        i = next(i for i, a in enumerate(gt["annotations"]) if isinstance(a["segmentation"], list))
        path = tuple(i if k == "POLY" else k for k in path)
    docs[target] = apply(docs[target], kind, path, arg)
    with pytest.raises(UserError) as e:
        run_evaluation(root, docs["gt"], docs["pred"])
    assert "\n" not in str(e.value)
