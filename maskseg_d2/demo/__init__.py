"""The embedded demo dataset: photo-like campus scenes (cars, sign boards) painted from a seed, with the
annotation exports a user would get from Label Studio and LabelMe. ``tools/make_demo_data.py`` calls
:func:`make_demo_dataset`; :func:`render_scene` paints one scene.

Modules: :mod:`.background` (sky, ground, trees, buildings), :mod:`.objects` (cars and signs),
:mod:`.scene` (placement, visibility, painting) and :mod:`.dataset` (the files written).
"""
from .dataset import GENERATOR_VERSION, make_demo_dataset
from .objects import CLASSES, VARIANTS, DemoObject
from .scene import MIN_VISIBLE_PX, render_scene

__all__ = ["CLASSES", "GENERATOR_VERSION", "MIN_VISIBLE_PX", "VARIANTS", "DemoObject", "make_demo_dataset",
           "render_scene"]
