"""Initial weights: torchvision ResNet-18 renamed to Detectron2 names and loaded into r18_fpn; offline failure."""
import os
from types import SimpleNamespace

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.engine.checkpoint import SafeCheckpointer
from maskseg_d2.engine.weights import cache_path, prepare_weights, torchvision_to_d2
from maskseg_d2.errors import UserError

DATA = SimpleNamespace(train_name="x_train", val_name="x_val", thing_classes=["car", "sign board"],
                       mask_format="polygon", num_train=4)


@pytest.fixture(scope="module")
def torchvision_r18(tmp_path_factory):
    """A torchvision resnet18 (random weights: no download) saved like the real checkpoint file."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("hub") / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path, state


def test_rename_covers_stem_stages_shortcuts():
    names = set(torchvision_to_d2({k: torch.zeros(1) for k in [
        "conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer1.0.bn2.bias",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean", "fc.weight",
        "layer4.1.bn1.num_batches_tracked"]}))
    assert names == {"stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv2.weight",
                     "res2.0.conv2.norm.bias", "res3.0.shortcut.weight", "res3.0.shortcut.norm.running_mean"}


def test_torchvision_resnet18_loads_into_the_r18_fpn_backbone(torchvision_r18, compose_cfg):
    path, state = torchvision_r18
    local = prepare_weights(str(path), str(path.parent))
    assert local == str(path.with_name("resnet18-f37072fd.d2.pth")) and os.path.isfile(local)
    assert torch.load(local, weights_only=True)["matching_heuristics"]  # tensors only: no pickle to trust
    model = build_model(build_d2_cfg(compose_cfg("model=r18_fpn", "device=cpu"), DATA, "o"))
    SafeCheckpointer(model).load(local)
    backbone = {k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items()
                if k.startswith("backbone.bottom_up.")}
    converted = torchvision_to_d2(state)
    assert set(backbone) == set(converted)  # every backbone tensor comes from the checkpoint, none left over
    for name, value in converted.items():
        assert torch.equal(backbone[name], torch.as_tensor(value)), name
    assert torch.equal(backbone["res3.0.shortcut.norm.running_var"], state["layer2.0.downsample.1.running_var"])


def test_converted_file_is_reused_and_other_pth_pass_through(torchvision_r18, tmp_path):
    path, _ = torchvision_r18
    first = prepare_weights(str(path), str(tmp_path))
    mtime = os.path.getmtime(first)
    assert prepare_weights(str(path), str(tmp_path)) == first and os.path.getmtime(first) == mtime
    d2_ckpt = tmp_path / "model_final.pth"
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}, "iteration": 3}, d2_ckpt)
    assert prepare_weights(str(d2_ckpt), str(tmp_path)) == str(d2_ckpt)
    assert prepare_weights("", str(tmp_path)) == ""


def test_offline_download_is_one_line_with_url_cache_path_and_fix(tmp_path):
    url = "http://127.0.0.1:9/models/resnet18-f37072fd.pth"  # nothing listens on port 9: fails at once
    with pytest.raises(UserError) as info:
        prepare_weights(url, str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"could not download {url}")
    assert cache_path(url) in msg and cache_path(url).endswith("models/resnet18-f37072fd.pth")
    assert "model.weights=/path/to/file" in msg and "model.weights=scratch" in msg
    assert cache_path("detectron2://ImageNetPretrained/MSRA/R-50.pkl").endswith(
        "detectron2/ImageNetPretrained/MSRA/R-50.pkl")
