"""Dataset importers (Label Studio, LabelMe) and registration in Detectron2's catalogs.

``register_dataset(cfg.dataset)`` is the entry point used by training/evaluation; the ``load_*``
functions return Detectron2 standard dataset dicts and can be used on their own.
"""
from .labelme import load_labelme
from .labelstudio import load_labelstudio
from .register import DatasetInfo, register_dataset

__all__ = ["register_dataset", "DatasetInfo", "load_labelstudio", "load_labelme"]
