"""tools/eval.py as users run it: gt=/pred= and compare= modes, its printed and saved values against pycocotools,
and one-line errors (exit 2) on bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from helpers.synthetic import make_synthetic_coco


# pycocotools' summarize() order, written out here (not imported) so that the test does not share the tool's list
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The markdown tables printed by the tool, keyed by their first column's header; rows as dicts."""
    tables, lines = {}, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|--"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                rows.append(dict(zip(header, (c.strip() for c in row.strip("|").split("|")))))
            tables[header[0]] = rows
    return tables


def _per_class_ap(ev, k: int) -> tuple[float, float]:
    """AP and AP50 of category index k from pycocotools' precision array, as Detectron2 derives them."""
    p = ev.eval["precision"][:, :, k, 0, -1]
    return tuple(float(np.mean(q[q > -1])) if (q > -1).any() else math.nan for q in (p, p[0]))


def _check_value(saved, printed: str, expected: float, what) -> None:
    """results.json (percent) to 1e-9 of pycocotools' fraction; the printed cell to its 1 decimal; None/'-' for
    undefined (pycocotools' -1, Detectron2's NaN)."""
    if math.isnan(expected) or expected < 0:
        assert saved is None and printed == "-", (what, saved, printed)
        return
    assert saved is not None and abs(saved / 100 - expected) <= 1e-9, (what, saved, expected)
    assert abs(float(printed) - 100 * expected) <= 0.05 + 1e-9, (what, printed, expected)


def test_gt_pred_mode_prints_tables(tmp_path, write_json, run_eval_tool):
    gt, preds = make_synthetic_coco(num_images=8, preds_per_image=6, seed=21, polygon_fraction=0.5)
    proc = run_eval_tool(
        f"gt={write_json('gt.json', gt)}",
        f"pred={write_json('pred.json', preds)}",
        f"output={tmp_path}/out",
        "num_worst=0",
        "plots=false",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| task" in proc.stdout and "| segm" in proc.stdout and "AR100" in proc.stdout
    assert "polygon masks converted to compressed RLE" in proc.stdout
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(saved) == {"bbox", "segm"} and not list((tmp_path / "out").glob("*.png"))


def test_gt_pred_values_equal_pycocotools(tmp_path, write_json, run_eval_tool, reference, polygons_to_rle):
    """All 12 stats and per-class AP/AP50, bbox and segm, printed and in results.json, vs pycocotools' COCOeval
    run here on the same files (crowd regions, every object size, polygon and RLE masks, a class without GT)."""
    gt, preds = make_synthetic_coco(num_images=12, preds_per_image=8, seed=31, polygon_fraction=0.5)
    proc = run_eval_tool(f"gt={write_json('gt.json', gt)}", f"pred={write_json('pred.json', preds)}",
                         f"output={tmp_path}/out", "num_worst=0", "plots=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    tables = _markdown_tables(proc.stdout)
    stats_rows = {row["task"]: row for row in tables["task"]}
    class_rows = {row["class"]: row for row in tables["class"]}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    assert set(class_rows) == set(names.values())
    ref_preds = polygons_to_rle(preds, gt)  # what a polygon prediction means; pycocotools' loadRes wants RLE
    for task in ("bbox", "segm"):
        ev = reference(gt, ref_preds, task)
        assert ev.stats[0] > 0.1, ev.stats  # non-trivial: hits, misses and confusions all present
        for key, expected in zip(COCO_STATS, ev.stats):
            _check_value(saved[task][key], stats_rows[task][key], float(expected), (task, key))
        for k, cat in enumerate(ev.params.catIds):
            name = names[cat]
            for prefix, expected in zip(("AP", "AP50"), _per_class_ap(ev, k)):
                _check_value(saved[task][f"{prefix}-{name}"], class_rows[name][f"{task} {prefix}"], expected,
                             (task, prefix, name))


def test_empty_results_warn_and_show_dashes(tmp_path, write_json, run_eval_tool):
    gt, _ = make_synthetic_coco(num_images=3, preds_per_image=2, seed=22)
    proc = run_eval_tool(
        f"gt={write_json('gt.json', gt)}", f"pred={write_json('pred.json', [])}", f"output={tmp_path}/out"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no predictions — every metric is undefined ('-')" in proc.stdout
    assert "| bbox   |    - |" in proc.stdout


def _unknown_image(gt, preds):
    preds[0]["image_id"] = 12345


def _unknown_category(gt, preds):
    preds[0]["category_id"] = 0


def _malformed_rle(gt, preds):
    preds[0]["segmentation"]["counts"] = "#$%^"


def _gt_without_categories(gt, preds):
    del gt["categories"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            _unknown_image,
            "1 results refer to image ids not in the GT (e.g. 12345) — "
            "were the predictions made on this GT file?",
        ),
        (_unknown_category, "category ids [0] are not in the GT categories [2, 4, 6, 8, 99]"),
        (
            _malformed_rle,
            "result #0 (image 1): malformed mask: compressed RLE counts are not a pycocotools string",
        ),
        (_gt_without_categories, "the GT has no categories"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(mutate, message, tmp_path, write_json, run_eval_tool):
    gt, preds = make_synthetic_coco(num_images=3, preds_per_image=3, seed=23)
    mutate(gt, preds)
    proc = run_eval_tool(
        f"gt={write_json('gt.json', gt)}", f"pred={write_json('pred.json', preds)}", f"output={tmp_path}/out"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert message in line


def test_compare_list_on_the_command_line(tmp_path, run_eval_tool):
    for name, ap in (("a", 10.0), ("b", 20.0)):
        (tmp_path / name / "eval").mkdir(parents=True)
        (tmp_path / name / "eval" / "results.json").write_text(
            json.dumps({"segm": {"AP": ap}, "bbox": {"AP": ap}})
        )
    proc = run_eval_tool(f"compare=[{tmp_path}/a,{tmp_path}/b]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].split("|")[2].strip() == "b" and rows[2].split("|")[2].strip() == "a"
    assert (tmp_path / "leaderboard.csv").exists()


def test_eval_config_takes_a_dataset_group():
    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        plain = compose("eval")
        other = compose("eval", overrides=["dataset=demo", "dataset.root=/data/x", "split=train"])
    assert plain.get("dataset") is None and plain.checkpoint is None and plain.backend == "auto"
    assert other.dataset.name == "demo" and other.dataset.images == "/data/x/images"
    assert other.split == "train"
