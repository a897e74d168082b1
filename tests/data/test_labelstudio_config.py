"""The one reader of a Label Studio labeling config: the push of predictions and the ML backend both use it."""

from __future__ import annotations

import pytest

from maskseg_d2.data.labelstudio_config import Targets, parse_label_config
from maskseg_d2.errors import UserError

CONFIG = """<View>
  <Header value="Outline the objects"/>
  <Image name="photo" value="$img"/>
  <PolygonLabels name="outline" toName="photo"><Label value="Car"/><Label value="sign board"/></PolygonLabels>
  <BrushLabels name="paint" toName="photo"><Label value="Car"/></BrushLabels>
  <Choices name="ok" toName="photo"><Choice value="yes"/></Choices>
</View>"""


def test_both_tags_on_one_image():
    assert parse_label_config(CONFIG) == Targets(to_name="photo", data_key="img", polygon="outline", brush="paint",
                                                 labels={"outline": ["Car", "sign board"], "paint": ["Car"]})


def test_prefer_picks_the_tag_and_its_image():
    config = """<View><Image name="a" value="$left"/><Image name="b" value="$right"/>
      <PolygonLabels name="pa" toName="a"><Label value="car"/></PolygonLabels>
      <PolygonLabels name="pb" toName="b"><Label value="tree"/></PolygonLabels>
      <BrushLabels name="bb" toName="a,b"><Label value="car"/></BrushLabels></View>"""
    first = parse_label_config(config)
    assert (first.to_name, first.data_key, first.polygon, first.brush) == ("a", "left", "pa", "bb")
    chosen = parse_label_config(config, prefer="pb")
    assert (chosen.to_name, chosen.data_key, chosen.polygon, chosen.brush) == ("b", "right", "pb", "bb")
    assert parse_label_config(config, prefer="missing") == first


def test_label_names_follow_the_projects_spelling():
    assert parse_label_config(CONFIG).label_names(["car", "Sign Board", "tree"]) == ["Car", "sign board", None]


@pytest.mark.parametrize("config,message", [
    ("<View", "project 3: the labeling config is not valid XML (unclosed token: line 1, column 0) — fix it"),
    ('<View><Image name="i" value="$image"/><RectangleLabels name="r" toName="i"><Label value="car"/>'
     "</RectangleLabels></View>",
     "project 3: the labeling config has no <PolygonLabels> or <BrushLabels> tag (its tags: RectangleLabels) — add "
     "one on an <Image>, with a <Label value=...> per class (Settings > Labeling Interface)"),
    ('<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="elsewhere"/></View>',
     "project 3: the labeling config has no <PolygonLabels> or <BrushLabels> tag (its tags: PolygonLabels)"),
])
def test_a_config_without_our_tags_is_one_line(config, message):
    with pytest.raises(UserError) as e:
        parse_label_config(config, "project 3")
    assert str(e.value).startswith(message)


def test_shape_follows_the_tags_the_project_has():
    both = parse_label_config(CONFIG)
    assert [both.shape(s, "x") for s in ("auto", "polygon", "brush")] == ["auto", "polygon", "brush"]
    polygon_only = parse_label_config(CONFIG.replace('<BrushLabels name="paint" toName="photo"><Label value="Car"/>'
                                                     "</BrushLabels>", ""))
    assert (polygon_only.brush, polygon_only.shape("auto", "x"), polygon_only.shape("polygon", "x")) == \
        (None, "polygon", "polygon")
    with pytest.raises(UserError) as e:
        polygon_only.shape("brush", "project 3", "labelstudio.shape")
    assert str(e.value) == ("project 3: labelstudio.shape=brush but the labeling config has no <BrushLabels> tag — "
                            'add one on the <Image name="photo">, or set labelstudio.shape=auto')
