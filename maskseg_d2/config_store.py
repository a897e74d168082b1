"""Hydra ConfigStore entries that a YAML file cannot express.

Hydra closes the whole composed config (struct mode) before it applies command-line overrides, so a
key that is not in the YAML needs a leading ``+``. The raw Detectron2 escape hatches (``d2`` and
``model.d2``) are meant to take *any* Detectron2 key, so ``configs/train.yaml`` merges an empty node
with an explicit ``struct=False`` flag onto them (``optional d2_keys@d2: open``): an explicit flag on a
child outlives Hydra's ``set_struct(root, True)``, and ``d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=128``
works without ``+`` (``+d2...`` keeps working). Typos are still caught: Detectron2's
``merge_from_list`` rejects unknown keys with a one-line error (:mod:`maskseg_d2.config`).
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

__all__ = ["register_configs", "OPEN_GROUP"]

OPEN_GROUP = "d2_keys"


def register_configs() -> None:
    """Store ``d2_keys/open`` (an empty, non-struct node). Idempotent; run by ``import maskseg_d2``."""
    node = OmegaConf.create({})
    OmegaConf.set_struct(node, False)
    ConfigStore.instance().store(group=OPEN_GROUP, name="open", node=node, provider="maskseg_d2")
