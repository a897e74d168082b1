"""The embedded demo dataset: photo-like campus scenes (cars, sign boards) painted from a seed, with the
annotation exports a user would get from Label Studio and LabelMe. ``tools/make_demo_data.py`` calls
:func:`make_demo_dataset`."""
from .scene import GENERATOR_VERSION, make_demo_dataset

__all__ = ["GENERATOR_VERSION", "make_demo_dataset"]
