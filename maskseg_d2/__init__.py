"""maskseg-d2: instance segmentation experiments on Detectron2 (Mask R-CNN) with Hydra configs.

Importing the package applies :mod:`maskseg_d2.compat` first, so Detectron2 imports cleanly whether it is
an official build or the Python-only registry copy.
"""
from . import compat
from .config_store import register_configs
from .utils.paths import register_resolvers
from .utils.tool_help import register_help_resolver

compat.apply()
register_resolvers()
register_help_resolver()  # ${maskseg_options:<tool>} in the --help templates
register_configs()  # Hydra: raw Detectron2 keys (d2.X=...) need no leading +

__version__ = "0.1.0"
__all__ = ["compat", "__version__"]
