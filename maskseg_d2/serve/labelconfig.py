"""Which tags of a Label Studio labeling config our regions fill, read from the config Label Studio sends.

Label Studio posts the project's labeling config (XML) with every ``/setup`` (as ``schema``) and ``/predict`` (as
``label_config``); a result region names its tag (``from_name``) and the ``<Image>`` it is drawn on (``to_name``),
and its label must be one of that tag's ``<Label value=...>``. So the names are read from the config, never
configured by hand: the same backend serves projects whose tags are called differently.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence

__all__ = ["LabelConfigError", "Targets", "parse_label_config"]

_REGION_TAGS = {"polygonlabels": "polygon", "brushlabels": "brush"}


class LabelConfigError(ValueError):
    """The labeling config cannot hold our regions (one line, for the JSON error of the request)."""


@dataclass(frozen=True)
class Targets:
    """The tags one image's predictions go to.

    Attributes:
        to_name (str): the ``name`` of the ``<Image>`` tag.
        data_key (str): its ``$variable``: the task's ``data`` key holding the image URL.
        polygon (str | None): the ``name`` of a ``<PolygonLabels>`` tag on that image.
        brush (str | None): the ``name`` of a ``<BrushLabels>`` tag on that image.
        labels (dict[str, list[str]]): each of these tags' ``<Label value>``s.
    """

    to_name: str
    data_key: str
    polygon: str | None
    brush: str | None
    labels: dict[str, list[str]]

    def label_names(self, class_names: Sequence[str]) -> list[str | None]:
        """Each class as the project spells it (exact, else ignoring case and spaces); None: not in the config.

        Why: a project typed ``Car`` for our ``car`` still gets its regions, under its own spelling.
        """
        values = [v for tag in (self.polygon, self.brush) if tag for v in self.labels[tag]]
        folded = {v.casefold().strip(): v for v in reversed(values)}
        return [c if c in values else folded.get(str(c).casefold().strip()) for c in class_names]


def parse_label_config(xml: str) -> Targets:
    """The first ``<Image>`` with a ``<PolygonLabels>`` or ``<BrushLabels>`` tag pointing at it.

    Args:
        xml (str): the labeling config.

    Returns:
        Targets: the tag names and labels.

    Raises:
        LabelConfigError: not XML, or no image with a polygon or brush tag.
    """
    try:
        root = ET.fromstring(xml)  # expat: no external entities are fetched
    except ET.ParseError as e:
        raise LabelConfigError(f"label_config is not valid XML ({e})") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag.lower() == "image"}
    regions: dict[str, dict[str, tuple[str, list[str]]]] = {}
    for el in root.iter():
        kind = _REGION_TAGS.get(el.tag.lower())
        if kind and el.get("name") and el.get("toName") in images:
            labels = [lab.get("value") for lab in el.iter() if lab.tag.lower() == "label" and lab.get("value")]
            regions.setdefault(el.get("toName"), {}).setdefault(kind, (el.get("name"), labels))
    for name, value in images.items():
        if name in regions:
            tags = regions[name]
            polygon, brush = tags.get("polygon"), tags.get("brush")
            return Targets(to_name=name, data_key=value.lstrip("$"), polygon=polygon and polygon[0],
                           brush=brush and brush[0], labels={tag: labs for tag, labs in tags.values()})
    raise LabelConfigError("label_config has no <PolygonLabels> or <BrushLabels> tag on an <Image>: add one "
                           "(Settings -> Labeling Interface) whose <Label value>s are the run's classes")
