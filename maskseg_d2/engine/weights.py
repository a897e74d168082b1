"""Initial weights: fetched up front (an offline machine fails in one line, before any work is done), and
torchvision ResNet checkpoints renamed to Detectron2's ResNet keys.

Torchvision's ``resnet18-f37072fd.pth`` is a plain state dict (``layer1.0.bn1.weight``...). Detectron2 names
the same tensors ``res2.0.conv1.norm.weight``; :func:`torchvision_to_d2` renames them and :func:`prepare_weights`
writes ``<name>.d2.pth`` next to the download (``matching_heuristics`` lets Detectron2's checkpointer find them
under ``backbone.bottom_up.``). Both files are read with ``weights_only=True``: tensors only, no pickled code.
"""
from __future__ import annotations

import logging
import os
import re
from urllib.parse import urlparse

import torch
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import get_cache_dir

from ..errors import UserError
from ..utils.fileio import atomic_write

__all__ = ["ensure_weights", "prepare_weights", "cache_path", "is_torchvision_resnet", "torchvision_to_d2"]

logger = logging.getLogger(__name__)

_STAGE = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")
_D2_PREFIX, _D2_HTTPS = "detectron2://", "https://dl.fbaipublicfiles.com/detectron2/"  # Detectron2Handler's map


def cache_path(url: str) -> str:
    """Where iopath keeps a downloaded ``url``: ``<cache dir>/<url path>`` (``detectron2://`` expanded)."""
    if url.startswith(_D2_PREFIX):
        url = _D2_HTTPS + url[len(_D2_PREFIX):]
    return os.path.join(get_cache_dir(), urlparse(url).path.lstrip("/"))


def ensure_weights(weights: str) -> str:
    """Download (or find in iopath's cache) ``weights``; return the local path ("" stays "")."""
    if not weights or "://" not in weights:
        return weights
    try:
        return PathManager.get_local_path(weights)
    except Exception as e:  # urllib/iopath raise many types; all mean "could not fetch"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"could not download {weights} ({reason}) — on an offline machine copy the file to "
            f"{cache_path(weights)} (iopath's cache), or pass model.weights=/path/to/file, or train from "
            f"scratch with model.weights=scratch"
        ) from None


def is_torchvision_resnet(state: dict) -> bool:
    """True for a torchvision ``ResNet.state_dict()`` (stem ``conv1``/``bn1`` and ``layerN`` stages)."""
    return "conv1.weight" in state and "bn1.weight" in state and any(k.startswith("layer1.") for k in state)


def _rename(key: str) -> str | None:
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
        return None  # classifier head and BN counters: nothing to load them into
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    m = _STAGE.match(key)
    if not m:
        return None
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)  # layer1 == res2
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return f"res{stage}.{block}.{rest}"


def torchvision_to_d2(state: dict) -> dict:
    """Rename a torchvision ResNet state dict to Detectron2's ResNet names (``res2.0.conv1.norm.weight``).

    Args:
        state (dict[str, Tensor]): ``torchvision.models.resnetXX().state_dict()``.

    Returns:
        dict[str, Tensor]: the backbone tensors under Detectron2 names (``fc`` dropped), on CPU.
    """
    out = {}
    for key, value in state.items():
        name = _rename(key)
        if name is not None:
            out[name] = value.detach().cpu()
    return out


def _converted_path(local: str, fallback_dir: str) -> str:
    # .pth of tensors, loaded with weights_only=True (a .pkl would be unpickled in full)
    name = os.path.splitext(os.path.basename(local))[0] + ".d2.pth"
    folder = os.path.dirname(os.path.abspath(local))
    return os.path.join(folder if os.access(folder, os.W_OK) else fallback_dir, name)


def prepare_weights(weights: str, fallback_dir: str) -> str:
    """The local file to give ``MODEL.WEIGHTS``: downloaded if needed; torchvision ResNets converted once.

    Args:
        weights (str): a URL, a local path or "" (scratch).
        fallback_dir (str): where the converted file goes when the download's folder is read-only (the run dir).

    Returns:
        str: a local path ("" for scratch).
    """
    local = ensure_weights(weights)
    if not local or not local.endswith(".pth"):
        return local  # .pkl: Detectron2 / Caffe2 formats, loaded as they are
    out = _converted_path(local, fallback_dir)
    if os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(local):
        return out
    try:
        state = torch.load(local, map_location="cpu", weights_only=True)
    except Exception:  # a Detectron2 checkpoint with non-tensor state: not a torchvision file
        return local
    if not isinstance(state, dict) or not is_torchvision_resnet(state):
        return local
    converted = torchvision_to_d2(state)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    data = {"model": converted, "__author__": "torchvision", "matching_heuristics": True}
    atomic_write(out, lambda f: torch.save(data, f))  # parallel sweep jobs: no torn files
    logger.info("Converted torchvision ResNet %s -> %s (%d tensors, Detectron2 names)", local, out, len(converted))
    return out
