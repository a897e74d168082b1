"""maskseg_d2.compat: Detectron2 imports on today's stack; compiled-only ops fail with one clear line."""
import json
import subprocess
import sys

import pytest
import torch

from maskseg_d2 import compat


def test_detectron2_imports_and_reports_its_source():
    import detectron2
    from detectron2.modeling import build_model  # noqa: F401  (pulls in layers/, which imports _C)

    assert detectron2.__version__.startswith("0.")
    assert compat.detectron2_source() in ("official", "registry copy (pb1-detectron2==0.6)")


def test_pillow_linear_shim():
    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR


@pytest.mark.skipif(compat.has_compiled_ops(), reason="official Detectron2 build: the real op runs")
def test_compiled_only_op_raises_clear_error():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 30.0]])
    with pytest.raises(RuntimeError) as info:
        pairwise_iou_rotated(boxes, boxes)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("box_iou_rotated needs Detectron2's compiled ops; install the official build:")


def test_collect_env_works_with_stub():
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()


def test_mask_rcnn_fpn_runs_without_compiled_ops():
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 64, 96), "height": 64, "width": 96}])
    assert out[0]["instances"].image_size == (64, 96)


def test_doctor_prints_the_facts():
    out = subprocess.run([sys.executable, "-m", "maskseg_d2.doctor"], capture_output=True, text=True, check=True).stdout
    for key in ("detectron2", "compiled ops", "torch", "CUDA", "W&B mode"):
        assert key in out


def test_known_detectron2_noise_is_quiet_and_other_warnings_are_not():
    code = ("import warnings, numpy as np, torch, maskseg_d2\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    torch.meshgrid(torch.arange(2), torch.arange(2))\n"
            "    a = np.zeros(3); a.setflags(write=False); torch.from_numpy(a)\n"
            "    warnings.warn('a real warning')\n"
            "print([str(x.message) for x in w])")
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['a real warning']"


# Runs in a fresh interpreter. For every module of the package, in turn: forget every maskseg_d2 and Detectron2
# module and the Pillow shim, import that one module first, then check the two patches Detectron2 needs.
_IMPORT_EACH_FIRST = r"""
import importlib, json, pkgutil, sys
from PIL import Image
import maskseg_d2
names = sorted(m.name for m in pkgutil.walk_packages(maskseg_d2.__path__, "maskseg_d2."))
unpatched = []
for name in names:
    for mod in [m for m in sys.modules if m.split(".")[0] in ("maskseg_d2", "detectron2")]:
        del sys.modules[mod]
    if getattr(Image, "LINEAR", None) == Image.BILINEAR:
        del Image.LINEAR
    importlib.import_module(name)
    try:
        import detectron2.layers  # imports detectron2._C: fails on the Python-only copy unless stubbed
    except ImportError as e:
        unpatched.append(f"{name}: {e}")
        continue
    if not hasattr(Image, "LINEAR"):
        unpatched.append(f"{name}: no Image.LINEAR")
print(json.dumps({"modules": names, "unpatched": unpatched}))
"""


def test_importing_any_module_first_leaves_detectron2_patched():
    """Only maskseg_d2/__init__.py applies the shims; Python runs it before any submodule, whichever comes first."""
    if compat.detectron2_source().startswith("registry"):  # the check below means something: unpatched fails
        bare = subprocess.run([sys.executable, "-c", "import detectron2.layers"], capture_output=True, text=True)
        assert bare.returncode != 0 and "_C" in bare.stderr
    out = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["modules"]) > 40 and "maskseg_d2.engine.trainer" in result["modules"]
    assert result["unpatched"] == []
