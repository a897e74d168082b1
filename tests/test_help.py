"""``--help`` of each Hydra tool: what it does, its examples, its own groups only, every option with its meaning."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from maskseg_d2.utils.tool_help import read_options

ROOT = Path(__file__).resolve().parents[1]
# The groups of each tool's own defaults list (Hydra's default help listed every group of configs/ for all).
GROUPS = {
    "train": {"paths", "model", "dataset", "solver", "augment", "trainer", "logger", "experiment", "hparams_search",
              "debug"},
    "eval": {"paths", "dataset"},
    "predict": set(),
    "export": set(),
    "serve": set(),
    "visualize": {"paths", "dataset", "augment"},
}


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        key = f"{prefix}{k}"
        deeper = isinstance(v, dict) and v and k != "d2"  # raw Detectron2 nodes: Detectron2 documents their keys
        keys += _leaf_keys(v, f"{key}.") if deeper else [key]
    return keys


def _section(text: str, title: str) -> list[str]:
    lines = text.split(title, 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [line.split("=", 1)[0].strip() for line in lines]


@pytest.mark.parametrize("tool", sorted(GROUPS))
def test_help_shows_examples_its_own_groups_and_every_option(tool):
    proc = subprocess.run([sys.executable, f"tools/{tool}.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    header = yaml.safe_load((ROOT / "configs" / "hydra" / "help" / f"{tool}.yaml").read_text())["header"]
    examples = [line.strip() for line in header.splitlines() if line.strip().startswith("python tools/")]
    assert 3 <= len(examples) <= 5 and all(e in text for e in examples), examples
    assert text.startswith(f"tools/{tool}.py: ") and "powered by Hydra" not in text
    if GROUPS[tool]:
        assert set(_section(text, "Config groups (group=option")) == GROUPS[tool]
    else:
        assert "Config groups" not in text
    assert "d2_keys" not in text and "== Config ==" not in text
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(tool), resolve=False)
    options = {line.split("=", 1)[0].strip() for line in text.splitlines() if line.startswith("  ") and "=" in line}
    missing = [k for k in _leaf_keys(cfg) if k not in options]
    assert not missing, f"options without a help line: {missing}"
    assert "eval \"$(python tools/" in text and "--cfg job" in text and "--info" in text


def test_help_of_an_experiment_shows_the_keys_it_sets():
    proc = subprocess.run([sys.executable, "tools/train.py", "experiment=demo", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "  experiment=demo " in proc.stdout
    section = proc.stdout.split("experiment=demo (configs/experiment/demo.yaml):", 1)[1].split("\n\n", 1)[0]
    assert "  solver.base_lr=0.02\n" in section and "  task_name=demo\n" in section  # @package _global_: no prefix


def test_read_options_takes_each_comment_once_and_skips_hydra_and_raw_d2(tmp_path):
    f = tmp_path / "tool.yaml"
    f.write_text(
        "# @package _global_\n# What it does. More words.\n# Second line.\ndefaults:\n  - _self_\n"
        "  - dataset: demo      # the data\n  - override hydra/job_logging: stdout\n\n"
        "run: null      # a run dir\nimage_root: null  # first part;\n                  # second part\n"
        "# about the next key\noutput: null\nvideo:\n  fps: null    # $rate\n  codec: mp4v\n"
        "d2:\n  MODEL: {X: 1}\nhydra:\n  run: {dir: .}\n", encoding="utf-8")
    header, defaults, keys = read_options(f)
    assert header == "What it does."
    assert [(d.key, d.value, d.comment) for d in defaults] == [("dataset", "demo", "the data")]
    assert [(k.key, k.value, k.comment) for k in keys] == [
        ("run", "null", "a run dir"), ("image_root", "null", "first part; second part"),
        ("output", "null", "about the next key"), ("video", "", ""), ("video.fps", "null", "$rate"),
        ("video.codec", "mp4v", ""), ("d2", "{...}", "Detectron2 keys set by this file (--cfg job shows them)")]
