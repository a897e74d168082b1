"""``model.config_file=<your Detectron2 yaml>``: its ``_BASE_`` chain is resolved as Detectron2 resolves it, the model
trains, and ``run_info.json`` lists the SOLVER/INPUT values the run departs from — checked against Detectron2's own
``get_cfg().merge_from_file`` of the same files. A missing file (or ``_BASE_``) is one line."""
import json
import shutil
from pathlib import Path

import pytest
from detectron2 import model_zoo
from detectron2.config import get_cfg
from helpers.train_process import metrics_rows

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.errors import UserError

# The zoo's own base, copied to another folder: _BASE_ must be found relative to the file that names it.
CHILD = """_BASE_: "../base/Base-RCNN-FPN.yaml"
MODEL:
  MASK_ON: True
  RESNETS: {DEPTH: 18, RES2_OUT_CHANNELS: 64}
  FPN: {OUT_CHANNELS: 64}
  ROI_BOX_HEAD: {FC_DIM: 256}
SOLVER:
  BASE_LR: 0.005
INPUT:
  MIN_SIZE_TEST: 96
"""


@pytest.fixture
def user_yaml(tmp_path) -> Path:
    (tmp_path / "base").mkdir()
    shutil.copy(model_zoo.get_config_file("Base-RCNN-FPN.yaml"), tmp_path / "base" / "Base-RCNN-FPN.yaml")
    (tmp_path / "mine").mkdir()
    path = tmp_path / "mine" / "my_mask_rcnn.yaml"
    path.write_text(CHILD)
    return path


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: list(node) if isinstance(node, (list, tuple)) else node}


@pytest.mark.slow
def test_a_local_yaml_with_base_trains_and_run_info_lists_its_departures(train_tiny, user_yaml):
    run_dir, _ = train_tiny("model=r50_fpn_1x", f"model.config_file={user_yaml}", "model.weights=scratch",
                            "solver.max_iter=2", "logger=none", "num_vis=0")
    assert max(m["iteration"] for m in metrics_rows(run_dir) if "total_loss" in m) == 1
    assert (run_dir / "model_final.pth").is_file()

    reference = get_cfg()  # Detectron2 alone, on the same file
    reference.merge_from_file(str(user_yaml))
    assert reference.MODEL.RPN.IN_FEATURES == ["p2", "p3", "p4", "p5", "p6"]  # from the base: the chain resolved
    ran = get_cfg()
    ran.set_new_allowed(True)  # the MASKSEG node
    ran.merge_from_file(str(run_dir / "config.yaml"))
    assert ran.MODEL.RESNETS.DEPTH == 18 and ran.MODEL.FPN.OUT_CHANNELS == 64  # the file's own keys
    assert ran.MODEL.RPN.IN_FEATURES == reference.MODEL.RPN.IN_FEATURES
    assert ran.MODEL.ANCHOR_GENERATOR.SIZES == reference.MODEL.ANCHOR_GENERATOR.SIZES

    info = json.loads((run_dir / "run_info.json").read_text())["model_config"]
    assert info["file"] == str(user_yaml)
    before, after = _leaves(dict(reference)), _leaves(dict(ran))
    expected = {k: [before[k], after[k]] for k in sorted(after) if k.split(".")[0] in ("SOLVER", "INPUT")
                and before[k] != after[k] and k != "INPUT.MASK_FORMAT"}
    assert info["departs_from_base"] == json.loads(json.dumps(expected))
    # the fine-tune's departures from the file's recipe, named: demo's lr and image sizes, the tiny schedule
    assert info["departs_from_base"]["SOLVER.BASE_LR"] == [0.005, 0.02]
    assert info["departs_from_base"]["INPUT.MIN_SIZE_TEST"] == [96, 192]
    assert info["departs_from_base"]["SOLVER.MAX_ITER"] == [90000, 2]
    assert "SOLVER.MOMENTUM" not in info["departs_from_base"]  # 0.9 in both


def test_a_missing_config_file_is_one_line(compose_cfg, tmp_path):
    cfg = compose_cfg(f"model.config_file={tmp_path / 'nope.yaml'}", "device=cpu")
    with pytest.raises(UserError, match=rf"^model.config_file={tmp_path / 'nope.yaml'}: no such file, nor a "
                                        r"model-zoo config — give the path of a Detectron2 yaml"):
        build_d2_cfg(cfg, None, "o")


def test_a_missing_base_is_one_line_naming_the_file(compose_cfg, user_yaml):
    shutil.rmtree(user_yaml.parent.parent / "base")
    cfg = compose_cfg(f"model.config_file={user_yaml}", "device=cpu")
    with pytest.raises(UserError, match=rf"^{user_yaml}: cannot load it as a Detectron2 config \(.*Base-RCNN-FPN"
                                        r".yaml.*\) — model.config_file must be a Detectron2 yaml"):
        build_d2_cfg(cfg, None, "o")
