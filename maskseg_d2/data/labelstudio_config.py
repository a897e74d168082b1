"""Which tags of a Label Studio labeling config our regions fill: the one reader of a project's config (XML).

A result region names its tag (``from_name``) and the ``<Image>`` it is drawn on (``to_name``), and its label must
be one of that tag's ``<Label value=...>``. So the names are read from the project's config, never configured by
hand: the push of predictions reads it from the project (``label_config``), the ML backend from what Label Studio
sends with ``/setup`` (``schema``) and ``/predict`` (``label_config``).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence

from ..errors import fail

__all__ = ["REGION_TAGS", "Targets", "parse_label_config"]

REGION_TAGS = {"polygonlabels": "PolygonLabels", "brushlabels": "BrushLabels"}  # result type -> its tag


@dataclass(frozen=True)
class Targets:
    """The tags one image's predictions go to.

    Attributes:
        to_name (str): the ``name`` of the ``<Image>`` tag.
        data_key (str): its ``$variable``: the task's ``data`` key holding the image URL.
        polygon (str | None): the ``name`` of a ``<PolygonLabels>`` tag on that image.
        brush (str | None): the ``name`` of a ``<BrushLabels>`` tag on that image.
        labels (dict[str, list[str]]): each polygon or brush tag's ``<Label value>``s.
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

    def shape(self, wanted: str, where: str, setting: str = "shape") -> str:
        """The shape the project can take: ``auto`` with both tags, else the one it has; a missing tag is an error.

        Args:
            wanted (str): ``auto`` | ``polygon`` | ``brush``.
            where (str): the project or request, for errors.
            setting (str): the option that asked for ``wanted`` (``labelstudio.shape``, ``shape``).
        """
        if wanted == "auto" and not (self.polygon and self.brush):
            return "polygon" if self.polygon else "brush"
        if wanted in ("polygon", "brush") and not (self.polygon if wanted == "polygon" else self.brush):
            tag = REGION_TAGS[f"{wanted}labels"]
            raise fail(where, f"{setting}={wanted} but the labeling config has no <{tag}> tag",
                       f"add one on the <Image name=\"{self.to_name}\">, or set {setting}=auto")
        return wanted


def parse_label_config(xml: str, where: str = "label_config", prefer: str = "") -> Targets:
    """The ``<Image>`` of the first ``<PolygonLabels>`` or ``<BrushLabels>`` tag on one, and its tags of each kind.

    Args:
        xml (str): the labeling config.
        where (str): the project or request, for errors.
        prefer (str): a tag name chosen first when it is one of several (``labelstudio.from_name``).

    Returns:
        Targets: the tag names and labels.

    Raises:
        UserError: not XML, or no image with a polygon or brush tag (one line).
    """
    try:
        root = ET.fromstring(xml)  # expat: no external entities are fetched
    except ET.ParseError as e:
        raise fail(where, f"the labeling config is not valid XML ({e})",
                   "fix it in the project's Settings > Labeling Interface") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag.lower() == "image"}
    regions = []  # (name, kind, images it is drawn on), in the config's order
    labels: dict[str, list[str]] = {}
    for el in root.iter():
        kind, name = REGION_TAGS.get(el.tag.lower()), el.get("name")
        on = [n.strip() for n in (el.get("toName") or "").split(",") if n.strip() in images]
        if kind and name and on:
            regions.append((name, kind, on))
            labels[name] = [lab.get("value") for lab in el.iter() if lab.tag.lower() == "label" and lab.get("value")]
    if not regions:
        kinds = ", ".join(sorted({el.tag for el in root.iter() if el.get("toName")})) or "none"
        raise fail(where, f"the labeling config has no <PolygonLabels> or <BrushLabels> tag (its tags: {kinds})",
                   "add one on an <Image>, with a <Label value=...> per class (Settings > Labeling Interface)")
    first = next((r for r in regions if r[0] == prefer), regions[0])
    image = first[2][0]

    def tag(kind: str) -> str | None:
        hits = [name for name, k, on in regions if k == kind and image in on]
        return first[0] if first[0] in hits else (hits[0] if hits else None)

    return Targets(to_name=image, data_key=images[image].lstrip("$"), polygon=tag("PolygonLabels"),
                   brush=tag("BrushLabels"), labels=labels)
