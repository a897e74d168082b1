"""tools/eval.py as users run it: gt=/pred= and compare= modes, and one-line errors (exit 2) on bad input."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from helpers.synthetic import make_synthetic_coco


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


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
